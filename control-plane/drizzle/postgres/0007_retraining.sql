CREATE TABLE "retraining_policies" (
	"model_name" text PRIMARY KEY NOT NULL,
	"policy" jsonb NOT NULL,
	"webhook_secret" text,
	"updated_at" bigint NOT NULL,
	"updated_by" text
);
--> statement-breakpoint
CREATE TABLE "retraining_runs" (
	"id" text PRIMARY KEY NOT NULL,
	"model_name" text NOT NULL,
	"parent_model" jsonb,
	"reason" jsonb NOT NULL,
	"dataset_id" text NOT NULL,
	"export_urls" jsonb NOT NULL,
	"webhook_url" text,
	"status" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_status_code" integer,
	"last_error" text,
	"next_attempt_at" bigint,
	"deliveries" jsonb NOT NULL,
	"claimed_by" text,
	"claimed_at" bigint,
	"result_model_id" text,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL,
	"created_by" text
);
--> statement-breakpoint
CREATE INDEX "retraining_runs_status_idx" ON "retraining_runs" USING btree ("status","next_attempt_at");--> statement-breakpoint
CREATE INDEX "retraining_runs_model_idx" ON "retraining_runs" USING btree ("model_name","created_at");--> statement-breakpoint
CREATE INDEX "retraining_runs_result_model_idx" ON "retraining_runs" USING btree ("result_model_id");