import { defineConfig } from 'drizzle-kit';

// SQLite migrations from src/db/sqlite/schema.ts: npm run db:generate -w @edgeloop/control-plane
export default defineConfig({
  dialect: 'sqlite',
  schema: './src/db/sqlite/schema.ts',
  out: './drizzle/sqlite',
});
