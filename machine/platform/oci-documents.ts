/**
 * The OCI documents we read from outside (an image layout on disk, a
 * registry): image index, image manifest, the registry catalog. Each is
 * validated with a zod schema before use, so a hostile or broken source gets
 * a message naming the document and field, never a crash; digests and
 * repository names are checked against their grammars because they end up
 * in URLs and fw_cfg file names.
 */
import { z } from 'zod';

export const MT_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** Firmware container blobs are small; nothing we pull is allowed past this. */
export const MAX_BLOB_BYTES = 256 * 1024 * 1024;
/** JSON documents (index, manifest, catalog) are small too. */
export const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;

export class OciDocumentError extends Error {
  override name = 'OciDocumentError';
}

/** Only sha256, lower-case hex: the digest is also a path segment of a URL and a file name. */
const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256:<64 lower-case hex digits>');
const descriptor = z.object({
  mediaType: z.string().max(255),
  digest,
  size: z.number().int().min(0).max(MAX_BLOB_BYTES),
  annotations: z.record(z.string(), z.string()).optional(),
});

const indexSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.literal(MT_INDEX).optional(),
  manifests: z.array(descriptor).max(4096),
});

const manifestSchema = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.literal(MT_MANIFEST),
  config: descriptor,
  layers: z.array(descriptor).max(1024),
});

/** The distribution spec's repository name grammar (path components of [a-z0-9] with . _ - separators). */
export const REPOSITORY_NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const catalogSchema = z.object({ repositories: z.array(z.string().max(255).regex(REPOSITORY_NAME, 'not a repository name')).max(10000).nullable().optional() });

export type OciDescriptor = z.infer<typeof descriptor>;
export type OciIndex = z.infer<typeof indexSchema>;
export type OciManifest = z.infer<typeof manifestSchema>;

function parse<T>(schema: z.ZodType<T>, bytes: Uint8Array, what: string): T {
  if (bytes.length > MAX_DOCUMENT_BYTES) throw new OciDocumentError(`${what}: ${bytes.length} bytes, more than the ${MAX_DOCUMENT_BYTES} allowed for a JSON document`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (e) {
    throw new OciDocumentError(`${what}: not JSON (${(e as Error).message})`);
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new OciDocumentError(`${what}: ${issue.path.map(String).join('.') || '(document)'}: ${issue.message}`);
  }
  return r.data;
}

export const parseOciIndex = (bytes: Uint8Array, what: string): OciIndex => parse(indexSchema, bytes, what);
export const parseOciManifest = (bytes: Uint8Array, what: string): OciManifest => parse(manifestSchema, bytes, what);
export const parseRegistryCatalog = (bytes: Uint8Array, what: string): string[] => parse(catalogSchema, bytes, what).repositories ?? [];
