import { execFile } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import {
  type ModelManifestInput,
  RETRAINING_SIGNATURE_HEADER,
  type RetrainingWebhookPayload,
  RetrainingWebhookPayload as WebhookPayload,
} from '@edgeloop/protocol';
import { sceneBoxes, yoloBytes, yoloManifest } from '../../agent/test/support/yolo-variants.ts';

/*
 * A stand-in trainer for the closed-loop e2e test (test code, not product code): what a user's
 * training pipeline does with edgeloop's retraining webhook, with the real binaries only.
 *
 *   1. receive the POST on node:http and verify X-Edgeloop-Signature-256 (HMAC-SHA256 of the raw
 *      body under the shared secret, compared in constant time) before parsing anything; a wrong
 *      signature is answered 401 and counted;
 *   2. claim the run (links.claim) and pull the frozen dataset version from the payload's COCO URL;
 *   3. label it as an annotator would (`edgeloop datasets import-labels`): every image gets the
 *      stand-in scene (person, car, dog: the boxes the test ONNX models encode, mapped through the
 *      letterbox into the image), and export the labelled version (`edgeloop datasets export`);
 *   4. "train": write a real ONNX model for the plan of this run (better: sees the three objects;
 *      worse: sees only the person; devices-worse: the better model's detections in another output
 *      layout, so other bytes, and the simulator plays it slow on the devices);
 *   5. sign it with its lineage (`edgeloop-image sign --dataset-version --parent-model --run-id
 *      --trainer`) and upload it (`edgeloop models upload`);
 *   6. start the rollout with a validation spec on the labelled version (`edgeloop rollouts create`:
 *      it waits pending), then evaluate it against the parent model downloaded from the registry
 *      (`edgeloop-agent eval --baseline`), which posts the report the validation gate reads.
 */

export type TrainerPlan = { readonly version: string; readonly kind: 'better' | 'worse' | 'devices-worse' };

export type TrainerBinaries = { readonly image: string; readonly edgeloop: string; readonly agent: string };

export type StandInTrainerDeps = {
  readonly secret: string;
  readonly controlPlaneUrl: string;
  /** An operator token: claims, exports, labels, uploads, rollouts, evaluation reports. */
  readonly token: string;
  readonly work: string;
  /** The release signing key (edgeloop-image keygen). */
  readonly keyPath: string;
  readonly bins: TrainerBinaries;
  /** One plan per webhook, in the order they arrive; a webhook past the last is refused 409. */
  readonly plans: readonly TrainerPlan[];
  /** The rollout spec of a trained model, before its validation (added by the trainer). */
  readonly rolloutSpec: (modelId: string) => Record<string, unknown>;
  readonly validation: { readonly metric: 'map50' | 'map'; readonly minDelta: number };
  /** Told each step as it happens (the test's timeline). */
  readonly log: (event: string) => void;
};

export type TrainerRun = {
  readonly runId: string;
  readonly plan: TrainerPlan;
  readonly payload: RetrainingWebhookPayload;
  readonly labelledDataset: string;
  readonly modelId: string;
  readonly modelSha256: string;
  readonly rolloutId: string;
  readonly evaluation: { readonly candidate: number; readonly baseline: number | null };
  readonly images: number;
};

export type StandInTrainer = {
  start(): Promise<{ url: string }>;
  stop(): Promise<void>;
  /** Runs trained so far, in order. */
  readonly runs: readonly TrainerRun[];
  /** Webhooks refused for a wrong or missing signature. */
  readonly rejected: number;
  /** Failures of a run after it was accepted (the test prints them). */
  readonly errors: readonly string[];
  /** The raw body and signature header of the last webhook that verified (to replay it forged). */
  readonly lastWebhook: { readonly body: Buffer; readonly signature: string } | null;
  /** The webhook URL, once started. */
  readonly url: string | null;
  /** Resolves when every accepted webhook has been worked through. */
  idle(): Promise<void>;
};

type Run = { code: number; stdout: string; stderr: string };

/** Whether `header` is `sha256=<hex HMAC-SHA256 of body under secret>`, compared in constant time. */
export function verifySignature(secret: string, body: Buffer, header: string | undefined): boolean {
  if (!header?.startsWith('sha256=')) return false;
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The stand-in scene's three boxes (COCO [x, y, w, h]) in an image of `width` x `height`. */
export function sceneLabels(
  width: number,
  height: number,
): { label: string; bbox: [number, number, number, number] }[] {
  const manifest = yoloManifest('det', '0.0.0');
  const input = manifest.input as { width: number; height: number };
  const labels = manifest.labels as readonly string[];
  // The agent's letterbox: scale to fit, centred, padded.
  const scale = Math.min(input.width / width, input.height / height);
  const padX = (input.width - Math.round(width * scale)) / 2;
  const padY = (input.height - Math.round(height * scale)) / 2;
  return sceneBoxes()
    .filter((box) => box.score >= 0.5)
    .filter((box, i, all) => all.findIndex((other) => other.classId === box.classId) === i)
    .map((box) => ({
      label: labels[box.classId] ?? `class${box.classId}`,
      bbox: [(box.cx - box.w / 2 - padX) / scale, (box.cy - box.h / 2 - padY) / scale, box.w / scale, box.h / scale],
    }));
}

function modelBytes(kind: TrainerPlan['kind']): Uint8Array {
  if (kind === 'worse') return yoloBytes({ boxes: sceneBoxes().filter((box) => box.classId === 0) });
  if (kind === 'devices-worse') return yoloBytes({ layout: 'yolov5' });
  return yoloBytes();
}

export function createStandInTrainer(deps: StandInTrainerDeps): StandInTrainer {
  const runs: TrainerRun[] = [];
  const errors: string[] = [];
  let rejected = 0;
  let accepted = 0;
  let server: Server | null = null;
  let url: string | null = null;
  let lastWebhook: { body: Buffer; signature: string } | null = null;
  let queue: Promise<void> = Promise.resolve();
  let counter = 100;
  const dir = join(deps.work, 'trainer');
  mkdirSync(dir, { recursive: true });

  const exec = (bin: string, args: readonly string[]): Promise<Run> =>
    new Promise((done) => {
      execFile(
        process.execPath,
        [bin, ...args],
        {
          cwd: dir,
          env: { ...process.env, EDGELOOP_URL: deps.controlPlaneUrl, EDGELOOP_TOKEN: deps.token, NO_COLOR: '1' },
          timeout: 120_000,
          maxBuffer: 16 * 1024 * 1024,
        },
        (error, stdout, stderr) =>
          done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
      );
    });
  const ok = async (bin: string, args: readonly string[]): Promise<string> => {
    const result = await exec(bin, args);
    if (result.code !== 0) {
      const name = bin.split('/').pop();
      throw new Error(`${name} ${args.join(' ')}: exit ${result.code}\n${result.stderr}${result.stdout}`);
    }
    return result.stdout;
  };
  const api = async (method: string, url: string, body?: unknown): Promise<Response> => {
    const response = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${deps.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    if (!response.ok) throw new Error(`${method} ${url}: HTTP ${response.status} ${await response.text()}`);
    return response;
  };
  const download = async (url: string, file: string): Promise<string> => {
    const response = await api('GET', url);
    writeFileSync(file, Buffer.from(await response.arrayBuffer()));
    return file;
  };

  async function train(payload: RetrainingWebhookPayload, plan: TrainerPlan): Promise<void> {
    const runId = payload.runId;
    const tag = `${payload.modelName}@${plan.version}`;
    await api('POST', payload.links.claim, { trainer: 'closed-loop stand-in trainer' });
    deps.log(`trainer claimed run ${runId} (${payload.reason.detail})`);

    // Pull the frozen version from the payload's export URL, then label it.
    const frozen = await download(payload.exportUrls.coco, join(dir, `${runId}-frozen.tar`));
    const { readCocoExport } = await import('../../agent/src/eval/coco-export.ts');
    const read = await readCocoExport(frozen);
    if (!read.ok) throw new Error(`the export of ${payload.dataset.id}: ${read.error.message}`);
    const images = read.value.images;
    deps.log(`trainer pulled ${payload.dataset.id} as COCO: ${images.length} images`);
    const categories = [...(yoloManifest('det', plan.version).labels as readonly string[])];
    let id = 1;
    const coco = {
      images: images.map((image) => ({
        id: image.id,
        file_name: image.fileName,
        width: image.width ?? 160,
        height: image.height ?? 120,
      })),
      annotations: images.flatMap((image) =>
        sceneLabels(image.width ?? 160, image.height ?? 120).map((box) => ({
          id: id++,
          image_id: image.id,
          category_id: categories.indexOf(box.label) + 1,
          bbox: box.bbox,
          area: box.bbox[2] * box.bbox[3],
          iscrowd: 0,
        })),
      ),
      categories: categories.map((name, i) => ({ id: i + 1, name })),
    };
    const labelsFile = join(dir, `${runId}-labels.json`);
    writeFileSync(labelsFile, JSON.stringify(coco));
    const imported = JSON.parse(
      await ok(deps.bins.edgeloop, ['datasets', 'import-labels', payload.dataset.id, '--file', labelsFile, '--json']),
    ) as { id: string };
    const labelled = imported.id;
    const labelledTar = join(dir, `${labelled.replace('@', '-')}.tar`);
    await ok(deps.bins.edgeloop, ['datasets', 'export', labelled, '--format', 'coco', '--out', labelledTar]);
    deps.log(`trainer labelled ${payload.dataset.id} as ${labelled} (${coco.annotations.length} boxes)`);

    // "Train", sign with lineage, upload.
    const manifest: ModelManifestInput = yoloManifest(
      payload.modelName,
      plan.version,
      plan.kind === 'devices-worse' ? 'yolov5' : 'yolov8',
    );
    const modelPath = join(dir, `${payload.modelName}-${plan.version}.onnx`);
    const manifestPath = join(dir, `${payload.modelName}-${plan.version}.json`);
    writeFileSync(modelPath, modelBytes(plan.kind));
    writeFileSync(manifestPath, JSON.stringify(manifest));
    const releasePath = join(dir, `${payload.modelName}-${plan.version}.release.json`);
    counter += 1;
    await ok(deps.bins.image, [
      'sign',
      ...['--key', deps.keyPath, '--model', modelPath, '--manifest', manifestPath],
      ...['--counter', String(counter), '--out', releasePath],
      ...['--dataset-version', payload.dataset.id, '--run-id', runId, '--trainer', `stand-in trainer (${plan.kind})`],
      ...(payload.parentModel ? ['--parent-model', payload.parentModel.sha256] : []),
    ]);
    const uploaded = JSON.parse(
      await ok(deps.bins.edgeloop, ['models', 'upload', '--release', releasePath, '--model', modelPath, '--json']),
    ) as { id: string; sha256: string };
    deps.log(`trainer uploaded ${uploaded.id} (lineage: ${payload.dataset.id}, run ${runId})`);

    // The rollout waits pending for its validation gate; the evaluation against the parent opens it.
    const specPath = join(dir, `rollout-${plan.version}.json`);
    writeFileSync(
      specPath,
      JSON.stringify({
        ...deps.rolloutSpec(tag),
        validation: { dataset: labelled, metric: deps.validation.metric, minDelta: deps.validation.minDelta },
      }),
    );
    const rollout = JSON.parse(await ok(deps.bins.edgeloop, ['rollouts', 'create', '--spec', specPath, '--json'])) as {
      id: string;
      status: string;
    };
    deps.log(`trainer started rollout ${rollout.id} of ${tag} (${rollout.status}, validation on ${labelled})`);

    const evalArgs = ['eval', '--model', modelPath, '--manifest', manifestPath, '--dataset', labelledTar];
    if (payload.parentModel) {
      const [name, version] = payload.parentModel.id.split('@') as [string, string];
      const base = `${deps.controlPlaneUrl}/api/v1/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}`;
      const parentPath = await download(`${base}/file`, join(dir, `parent-${payload.parentModel.id}.onnx`));
      const parent = (await (await api('GET', base)).json()) as { manifest: unknown };
      const parentManifest = join(dir, `parent-${payload.parentModel.id}.json`);
      writeFileSync(parentManifest, JSON.stringify(parent.manifest));
      evalArgs.push('--baseline', parentPath, '--baseline-manifest', parentManifest);
    }
    evalArgs.push('--control-plane-url', deps.controlPlaneUrl, '--provider', 'cpu', '--json');
    const report = JSON.parse(await ok(deps.bins.agent, evalArgs)) as {
      metrics: Record<string, number>;
      baseline?: { metrics: Record<string, number> } | null;
    };
    const metric = deps.validation.metric;
    const evaluation = {
      candidate: report.metrics[metric] ?? Number.NaN,
      baseline: report.baseline?.metrics[metric] ?? null,
    };
    deps.log(
      `trainer evaluated ${tag} on ${labelled}: ${metric} ${evaluation.candidate.toFixed(3)} against ` +
        `${payload.parentModel?.id ?? 'no champion'} ${evaluation.baseline?.toFixed(3) ?? '-'}`,
    );
    runs.push({
      runId,
      plan,
      payload,
      labelledDataset: labelled,
      modelId: uploaded.id,
      modelSha256: uploaded.sha256,
      rolloutId: rollout.id,
      evaluation,
      images: images.length,
    });
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const header = request.headers[RETRAINING_SIGNATURE_HEADER.toLowerCase()];
    if (!verifySignature(deps.secret, body, typeof header === 'string' ? header : undefined)) {
      rejected += 1;
      deps.log('trainer refused a webhook: wrong signature (401)');
      response.writeHead(401).end('bad signature');
      return;
    }
    lastWebhook = { body, signature: header as string };
    let payload: RetrainingWebhookPayload;
    try {
      payload = WebhookPayload.parse(JSON.parse(body.toString('utf8')));
    } catch (error) {
      response.writeHead(400).end(`bad payload: ${(error as Error).message}`);
      return;
    }
    const plan = deps.plans[accepted];
    if (!plan) {
      response.writeHead(409).end('no plan left for this run');
      return;
    }
    accepted += 1;
    deps.log(`trainer received run ${payload.runId} (signature ok, ${payload.dataset.id}, plan: ${plan.kind})`);
    response.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ accepted: payload.runId }));
    queue = queue.then(() =>
      train(payload, plan).catch((error: unknown) => {
        errors.push(`${payload.runId}: ${(error as Error).message}`);
        deps.log(`trainer failed run ${payload.runId}: ${(error as Error).message.split('\n')[0]}`);
      }),
    );
  }

  return {
    async start() {
      server = createServer((request, response) => {
        handle(request, response).catch((error: unknown) => {
          if (!response.headersSent) response.writeHead(500).end((error as Error).message);
        });
      });
      await new Promise<void>((done) => server?.listen(0, '127.0.0.1', done));
      const address = server.address() as AddressInfo;
      url = `http://127.0.0.1:${address.port}/hooks/edgeloop`;
      return { url };
    },
    async stop() {
      await new Promise<void>((done) => (server ? server.close(() => done()) : done()));
      server = null;
    },
    get runs() {
      return runs;
    },
    get rejected() {
      return rejected;
    },
    get errors() {
      return errors;
    },
    get lastWebhook() {
      return lastWebhook;
    },
    get url() {
      return url;
    },
    idle() {
      return queue;
    },
  };
}
