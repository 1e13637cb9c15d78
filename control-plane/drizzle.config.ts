import { defineConfig } from 'drizzle-kit';

// SQLite migrations from src/db/schema.ts: npm run db:generate -w @edgeloop/control-plane
export default defineConfig({
  dialect: 'sqlite',
  schema: './src/db/schema.ts',
  out: './drizzle/sqlite',
});
