CREATE TABLE "model_lineage" (
	"model_id" text PRIMARY KEY NOT NULL,
	"model_sha256" text NOT NULL,
	"dataset_id" text,
	"parent_sha256" text,
	"run_id" text,
	"trainer" text,
	"flags" jsonb NOT NULL,
	"created_at" bigint NOT NULL
);
--> statement-breakpoint
ALTER TABLE "model_lineage" ADD CONSTRAINT "model_lineage_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "model_lineage_parent_idx" ON "model_lineage" USING btree ("parent_sha256");--> statement-breakpoint
CREATE INDEX "model_lineage_run_idx" ON "model_lineage" USING btree ("run_id");--> statement-breakpoint
CREATE INDEX "model_lineage_dataset_idx" ON "model_lineage" USING btree ("dataset_id");