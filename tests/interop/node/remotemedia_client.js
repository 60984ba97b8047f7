// A Node.js RemoteMedia client, built only from the remotemedia.v1 .proto files:
//   node remotemedia_client.js HOST:PORT PROTO_DIR TOKEN
// It calls GetVersion, ExecutePipeline (a VideoFlip of one RGB24 frame), then
// StreamPipeline twice: 12 JSON chunks then CLOSE, and one chunk to a node that
// never finishes then CANCEL. It prints one JSON line per answer or response,
// tagged with the call, and exits 0 (1 on any error).
"use strict";
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, protoDir, token] = process.argv.slice(2);
const definition = protoLoader.loadSync(
  ["remotemedia/v1/execution.proto", "remotemedia/v1/streaming.proto"].map(
    (name) => path.join(protoDir, name)),
  { includeDirs: [protoDir], keepCase: true, longs: Number, enums: String, defaults: true,
    oneofs: true });
const v1 = grpc.loadPackageDefinition(definition).remotemedia.v1;
const credentials = grpc.credentials.createInsecure();
const execution = new v1.PipelineExecutionService(address, credentials);
const streaming = new v1.StreamingPipelineService(address, credentials);
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${token}`);

const print = (call, value) => console.log(JSON.stringify({ call, value }));
const fail = (what, error) => {
  console.error(`${what} failed: ${error.code} ${error.details}`);
  process.exit(1);
};
const manifest = (nodes, connections = []) => ({
  version: "v1", metadata: { name: "from-node" },
  nodes: nodes.map(([id, node_type, params]) => ({ id, node_type, params: JSON.stringify(params) })),
  connections: connections.map(([from, to]) => ({ from, to })),
});

function stream(nodes, connections, chunks, command) {
  return new Promise((resolve) => {
    const call = streaming.StreamPipeline(metadata);
    call.write({ init: { manifest: manifest(nodes, connections), client_version: "v1" } });
    call.on("data", (response) => {
      print(`stream-${command}`, response);
      if (response.response === "ready") {
        for (const [sequence, payload] of chunks) {
          call.write({ data_chunk: { node_id: nodes[0][0], sequence,
            buffer: { json: { json_payload: JSON.stringify(payload) } } } });
        }
        // CANCEL waits until the node has the chunk (it writes HOLD_FILE then).
        const started = Date.now();
        const send = () => {
          if (command === "COMMAND_CANCEL" && !fs.existsSync(process.env.HOLD_FILE)) {
            if (Date.now() - started > 20000) fail("waiting for the node", { code: "-" });
            setTimeout(send, 20);
            return;
          }
          call.write({ control: { command } });
          call.end();
        };
        send();
      }
    });
    call.on("error", (error) => fail(`StreamPipeline ${command}`, error));
    call.on("end", resolve);
  });
}

execution.GetVersion({ client_version: "v1" }, metadata, (error, version) => {
  if (error) fail("GetVersion", error);
  print("version", version);
  const frame = { pixel_data: Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]),
                  width: 2, height: 2, format: "PIXEL_FORMAT_RGB24" };
  execution.ExecutePipeline({
    manifest: manifest([["flip", "VideoFlip", { direction: "vertical" }]]),
    data_inputs: { flip: { video: frame } },
  }, metadata, async (error, answer) => {
    if (error) fail("ExecutePipeline", error);
    answer.result.data_outputs.flip.video.pixel_data =
      [...answer.result.data_outputs.flip.video.pixel_data];
    print("execute", answer);
    await stream([["in", "PassThrough", {}], ["tick", "test.Ticker", {}],
                  ["echo", "EchoNode", {}]], [["in", "tick"], ["tick", "echo"]],
                 [...Array(12).keys()].map((sequence) => [sequence, sequence % 3]),
                 "COMMAND_CLOSE");
    await stream([["hold", "test.Hold", { path: process.env.HOLD_FILE }]], [],
                 [[0, "abc"]], "COMMAND_CANCEL");
    execution.close();
    streaming.close();
  });
});
