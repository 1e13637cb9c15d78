import { createSampleUploader, openSpool } from '@edgeloop/agent';

/*
 * A device's sample uploader in its own process, for samples-upload.test.ts to SIGKILL mid-upload:
 *   node --import tsx samples-uploader-child.ts <spoolDir> <controlPlaneUrl> <deviceId> <password>
 * Prints "uploaded <sha256>" per stored sample.
 */
const [dir, baseUrl, username, password] = process.argv.slice(2) as [string, string, string, string];
const spool = openSpool({ dir, maxBytes: 256 * 1024 * 1024 });
const uploader = createSampleUploader({
  spool,
  baseUrl,
  credentials: { username, password },
  options: { chunkBytes: 256 * 1024, initialRetryMs: 20, maxRetryMs: 200, requestTimeoutMs: 5000 },
  onUploaded(metadata) {
    process.stdout.write(`uploaded ${metadata.image.sha256}\n`);
  },
  onRejected(_metadata, reason) {
    process.stdout.write(`rejected ${reason}\n`);
  },
});
uploader.start();
