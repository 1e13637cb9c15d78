import { stat } from 'node:fs/promises';
import { fail, type Result, type SignedModelRelease } from '@edgeloop/protocol';
import { digestFile } from './file-digest.ts';
import { type VerifyErrorCode, type VerifyReleaseOptions, verifyRelease } from './verify.ts';

export type VerifyReleaseFileOptions = Omit<VerifyReleaseOptions, 'fileSize' | 'fileSha256'> & {
  readonly filePath: string;
  readonly signal?: AbortSignal;
};

/**
 * verifyRelease with the file facts taken from a file: the release itself is checked first (no
 * hashing for a release that is refused anyway), then the size from stat (no hashing of a file of
 * the wrong size), then the streamed sha256. `file_unreadable` when the file cannot be read; an
 * abort rejects with the AbortError.
 */
export async function verifyReleaseFile(
  signed: unknown,
  options: VerifyReleaseFileOptions,
): Promise<Result<SignedModelRelease, VerifyErrorCode | 'file_unreadable'>> {
  const { filePath, signal, ...base } = options;
  const checked = verifyRelease(signed, base);
  if (!checked.ok) return checked;
  try {
    const { size } = await stat(filePath);
    if (size !== checked.value.release.sizeBytes) return verifyRelease(signed, { ...base, fileSize: size });
    const digest = await digestFile(filePath, { signal });
    return verifyRelease(signed, { ...base, fileSize: digest.sizeBytes, fileSha256: digest.sha256 });
  } catch (error) {
    if (signal?.aborted) throw error;
    return fail('file_unreadable', `cannot read ${filePath}: ${(error as Error).message}`);
  }
}
