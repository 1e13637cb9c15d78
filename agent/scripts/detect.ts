import { runDetectCli } from '../src/vision/detect-cli.ts';

/*
 * `tsx agent/scripts/detect.ts --model M.onnx [--manifest M.json] FILE...`: the detect CLI on its
 * own, until main.ts dispatches `edgeloop-agent detect` to runDetectCli.
 */
process.exitCode = await runDetectCli(process.argv.slice(2), { env: process.env });
