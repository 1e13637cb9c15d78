CREATE TABLE "dataset_samples" (
	"dataset_id" text NOT NULL,
	"sample_id" text NOT NULL,
	"split" text NOT NULL,
	"annotations" jsonb,
	CONSTRAINT "dataset_samples_dataset_id_sample_id_pk" PRIMARY KEY("dataset_id","sample_id")
);
--> statement-breakpoint
CREATE TABLE "datasets" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"version" integer NOT NULL,
	"parent_id" text,
	"query" jsonb NOT NULL,
	"sample_count" integer DEFAULT 0 NOT NULL,
	"created_at" bigint NOT NULL,
	"created_by" text
);
--> statement-breakpoint
CREATE TABLE "sample_uploads" (
	"upload_id" text PRIMARY KEY NOT NULL,
	"device_id" text NOT NULL,
	"metadata" jsonb NOT NULL,
	"image_sha256" text NOT NULL,
	"bytes" bigint NOT NULL,
	"offset" bigint DEFAULT 0 NOT NULL,
	"created_at" bigint NOT NULL,
	"updated_at" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "samples" (
	"id" text PRIMARY KEY NOT NULL,
	"device_id" text NOT NULL,
	"site" text,
	"labels" jsonb NOT NULL,
	"model_id" text,
	"model_sha256" text,
	"strategy" text NOT NULL,
	"reason" text NOT NULL,
	"tags" jsonb NOT NULL,
	"predictions" jsonb NOT NULL,
	"frame_ts" bigint NOT NULL,
	"boot_id" text NOT NULL,
	"seq" bigint NOT NULL,
	"image_sha256" text NOT NULL,
	"bytes" bigint NOT NULL,
	"width" integer NOT NULL,
	"height" integer NOT NULL,
	"thumbnail_sha256" text,
	"received_at" bigint NOT NULL
);
--> statement-breakpoint
ALTER TABLE "dataset_samples" ADD CONSTRAINT "dataset_samples_dataset_id_datasets_id_fk" FOREIGN KEY ("dataset_id") REFERENCES "public"."datasets"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "dataset_samples_sample_idx" ON "dataset_samples" USING btree ("sample_id");--> statement-breakpoint
CREATE UNIQUE INDEX "datasets_name_version_uq" ON "datasets" USING btree ("name","version");--> statement-breakpoint
CREATE UNIQUE INDEX "sample_uploads_device_image_uq" ON "sample_uploads" USING btree ("device_id","image_sha256");--> statement-breakpoint
CREATE INDEX "sample_uploads_updated_idx" ON "sample_uploads" USING btree ("updated_at");--> statement-breakpoint
CREATE UNIQUE INDEX "samples_device_image_uq" ON "samples" USING btree ("device_id","image_sha256");--> statement-breakpoint
CREATE INDEX "samples_received_idx" ON "samples" USING btree ("received_at","id");--> statement-breakpoint
CREATE INDEX "samples_device_received_idx" ON "samples" USING btree ("device_id","received_at");--> statement-breakpoint
CREATE INDEX "samples_frame_ts_idx" ON "samples" USING btree ("frame_ts");--> statement-breakpoint
CREATE INDEX "samples_image_idx" ON "samples" USING btree ("image_sha256");