/*
 * The SQLite schema lives beside its dialect now (sqlite/schema.ts). This re-export is kept only
 * for sqlite/ingest.ts, which another change is rewriting at the same time: once it imports
 * './schema.ts' from sqlite/, delete this file.
 */
export * from './sqlite/schema.ts';
