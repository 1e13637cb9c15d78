CREATE TABLE "models" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"version" text NOT NULL,
	"sha256" text NOT NULL,
	"size_bytes" bigint NOT NULL,
	"release_counter" bigint NOT NULL,
	"adapter" text NOT NULL,
	"key_id" text NOT NULL,
	"issued_at" bigint NOT NULL,
	"expires_at" bigint NOT NULL,
	"signed" text NOT NULL,
	"manifest" jsonb NOT NULL,
	"created_at" bigint NOT NULL,
	"uploaded_by" text
);
--> statement-breakpoint
CREATE TABLE "rollout_devices" (
	"rollout_id" text NOT NULL,
	"device_id" text NOT NULL,
	"mode" text NOT NULL,
	"stage_index" integer NOT NULL,
	"state" text NOT NULL,
	"previous" jsonb,
	"assigned_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL,
	"reason" text,
	CONSTRAINT "rollout_devices_rollout_id_device_id_pk" PRIMARY KEY("rollout_id","device_id")
);
--> statement-breakpoint
CREATE TABLE "rollout_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"rollout_id" text NOT NULL,
	"at" bigint NOT NULL,
	"type" text NOT NULL,
	"stage" text,
	"data" jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "rollouts" (
	"id" text PRIMARY KEY NOT NULL,
	"model_id" text NOT NULL,
	"spec" jsonb NOT NULL,
	"status" text NOT NULL,
	"stage_index" integer NOT NULL,
	"stage_started_at" bigint NOT NULL,
	"failing_windows" integer DEFAULT 0 NOT NULL,
	"last_evaluated_at" bigint,
	"cohorts" jsonb NOT NULL,
	"reason" text,
	"version" integer DEFAULT 1 NOT NULL,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL,
	"created_by" text
);
--> statement-breakpoint
ALTER TABLE "rollout_devices" ADD CONSTRAINT "rollout_devices_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_events" ADD CONSTRAINT "rollout_events_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollouts" ADD CONSTRAINT "rollouts_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "models_name_idx" ON "models" USING btree ("name");--> statement-breakpoint
CREATE INDEX "models_sha256_idx" ON "models" USING btree ("sha256");--> statement-breakpoint
CREATE INDEX "rollout_devices_device_idx" ON "rollout_devices" USING btree ("device_id");--> statement-breakpoint
CREATE INDEX "rollout_events_rollout_idx" ON "rollout_events" USING btree ("rollout_id","id");--> statement-breakpoint
CREATE INDEX "rollouts_status_idx" ON "rollouts" USING btree ("status");--> statement-breakpoint
CREATE INDEX "rollouts_created_idx" ON "rollouts" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "messages_channel_received_idx" ON "messages" USING btree ("channel","received_at");