CREATE TABLE "drift_references" (
	"scope" text NOT NULL,
	"key" text NOT NULL,
	"model_sha256" text NOT NULL,
	"model_id" text,
	"source" text NOT NULL,
	"dataset_id" text,
	"from_at" bigint,
	"to_at" bigint,
	"complete" boolean DEFAULT false NOT NULL,
	"sums" jsonb NOT NULL,
	"state" jsonb,
	"updated_at" bigint NOT NULL,
	"updated_by" text,
	CONSTRAINT "drift_references_scope_key_model_sha256_pk" PRIMARY KEY("scope","key","model_sha256")
);
--> statement-breakpoint
CREATE TABLE "drift_sampling_boosts" (
	"site" text PRIMARY KEY NOT NULL,
	"previous" jsonb,
	"raised" jsonb NOT NULL,
	"raised_at" bigint NOT NULL,
	"reason" jsonb NOT NULL
);
