ALTER TABLE "devices" ADD COLUMN "secret_hash_next" text;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "secret_next_deadline" bigint;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "auth_method" text DEFAULT 'secret' NOT NULL;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "cert_fingerprint" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "clock_skew" boolean DEFAULT false NOT NULL;--> statement-breakpoint
CREATE INDEX "messages_device_channel_received_idx" ON "messages" USING btree ("device_id","channel","received_at","seq");