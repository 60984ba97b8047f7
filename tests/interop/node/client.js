// A Node.js client of the actorstage runner service, built only from the .proto files:
//   node client.js HOST:PORT PROTO_DIR WORKFLOW_FILE [TOKEN]
// It executes the workflow, prints each streamed ProgressEvent as one JSON line,
// then GetExecution's answer as a last line, and exits 0 (1 on any error).
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoDir, workflowFile, token] = process.argv.slice(2);
const definition = protoLoader.loadSync(path.join(protoDir, "actorstage_proto/v1/runner.proto"), {
  includeDirs: [protoDir], keepCase: true, longs: Number, enums: String, defaults: true,
});
const { Runner } = grpc.loadPackageDefinition(definition).actorstage.v1;
const client = new Runner(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
if (token) metadata.set("authorization", `Bearer ${token}`);

const request = {
  execution_id: "from-node",
  workflow: fs.readFileSync(workflowFile, "utf8"),
  metadata: { name: "node-client", version: "1", labels: { client: "node" } },
  store_json: JSON.stringify({ caller: "node" }),
};
const call = client.Execute(request, metadata);
call.on("data", (event) => console.log(JSON.stringify(event)));
call.on("error", (error) => {
  console.error(`Execute failed: ${error.code} ${error.details}`);
  process.exit(1);
});
call.on("end", () => {
  client.GetExecution({ execution_id: "from-node" }, metadata, (error, info) => {
    if (error) {
      console.error(`GetExecution failed: ${error.code} ${error.details}`);
      process.exit(1);
    }
    console.log(JSON.stringify(info));
    client.close();
  });
});
