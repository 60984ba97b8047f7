// A Node.js client of the actorstage Pipelines service, built only from the .proto files:
//   node pipeline_client.js HOST:PORT PROTO_DIR MANIFEST_FILE INPUTS_FILE [TOKEN]
// INPUTS_FILE holds one input per line: {"data": BASE64} or {"json": TEXT}. The client
// opens StreamPipeline, sends the manifest, then each input as its own message, ends its
// side, and prints every response as one JSON line (bytes as base64). Exits 0, or 1 on error.
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoDir, manifestFile, inputsFile, token] = process.argv.slice(2);
const definition = protoLoader.loadSync(path.join(protoDir, "actorstage_proto/v1/pipeline.proto"), {
  includeDirs: [protoDir], keepCase: true, longs: Number, enums: String, defaults: true,
  oneofs: true,
});
const { Pipelines } = grpc.loadPackageDefinition(definition).actorstage.v1;
const client = new Pipelines(address, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
if (token) metadata.set("authorization", `Bearer ${token}`);

const inputs = fs.readFileSync(inputsFile, "utf8").split("\n").filter((line) => line)
  .map((line) => JSON.parse(line))
  .map((input) => (input.data !== undefined
    ? { data: Buffer.from(input.data, "base64") } : { json: input.json }));

const call = client.StreamPipeline(metadata);
call.on("data", (response) => {
  console.log(JSON.stringify(response, (key, value) => (
    value && value.type === "Buffer" ? Buffer.from(value.data).toString("base64") : value)));
});
call.on("error", (error) => {
  console.error(`StreamPipeline failed: ${error.code} ${error.details}`);
  process.exit(1);
});
call.on("end", () => client.close());

call.write({ start: { manifest: fs.readFileSync(manifestFile, "utf8"), session_id: "node" } });
for (const input of inputs) call.write({ inputs: [input] });
call.end();
