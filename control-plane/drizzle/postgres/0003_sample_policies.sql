CREATE TABLE "sample_policies" (
	"selector_key" text PRIMARY KEY NOT NULL,
	"selector" jsonb NOT NULL,
	"policy" jsonb NOT NULL,
	"updated_at" bigint NOT NULL,
	"updated_by" text
);
