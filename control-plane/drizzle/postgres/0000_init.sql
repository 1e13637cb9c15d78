CREATE TABLE "api_tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"role" text NOT NULL,
	"token_hash" text NOT NULL,
	"bootstrap" boolean DEFAULT false NOT NULL,
	"created_at" bigint NOT NULL,
	"revoked_at" bigint
);
--> statement-breakpoint
CREATE TABLE "dead_letters" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"received_at" bigint NOT NULL,
	"device_id" text,
	"topic" text NOT NULL,
	"reason" text NOT NULL,
	"detail" text NOT NULL,
	"payload_size" integer NOT NULL,
	"payload_excerpt" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "devices" (
	"id" text PRIMARY KEY NOT NULL,
	"labels" jsonb NOT NULL,
	"secret_hash" text NOT NULL,
	"enrolled_at" bigint NOT NULL,
	"revoked_at" bigint,
	"status" text DEFAULT 'unknown' NOT NULL,
	"status_changed_at" bigint,
	"status_boot_id" text,
	"status_seq" bigint,
	"status_session" integer,
	"boot_ids" jsonb NOT NULL,
	"boot_id" text,
	"last_seen" bigint,
	"agent_version" text,
	"keepalive_s" integer,
	"telemetry_interval_s" double precision,
	"health" text DEFAULT 'unknown' NOT NULL,
	"health_reasons" jsonb NOT NULL,
	"telemetry" jsonb,
	"telemetry_boot_id" text,
	"telemetry_seq" bigint,
	"telemetry_at" bigint,
	"reported" jsonb,
	"reported_boot_id" text,
	"reported_seq" bigint,
	"reported_at" bigint,
	"desired" jsonb,
	"desired_version" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"device_id" text NOT NULL,
	"channel" text NOT NULL,
	"msg_id" text NOT NULL,
	"boot_id" text NOT NULL,
	"seq" bigint NOT NULL,
	"device_ts" bigint NOT NULL,
	"received_at" bigint NOT NULL,
	"body" text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "api_tokens_hash_uq" ON "api_tokens" USING btree ("token_hash");--> statement-breakpoint
CREATE INDEX "devices_status_idx" ON "devices" USING btree ("status");--> statement-breakpoint
CREATE INDEX "devices_health_idx" ON "devices" USING btree ("health");--> statement-breakpoint
CREATE UNIQUE INDEX "messages_device_msg_uq" ON "messages" USING btree ("device_id","msg_id");--> statement-breakpoint
CREATE INDEX "messages_device_channel_ts_idx" ON "messages" USING btree ("device_id","channel","device_ts");