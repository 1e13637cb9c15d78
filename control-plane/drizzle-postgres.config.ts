import { defineConfig } from 'drizzle-kit';

// PostgreSQL migrations from src/db/postgres/schema.ts (run by npm run db:generate too).
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/postgres/schema.ts',
  out: './drizzle/postgres',
});
