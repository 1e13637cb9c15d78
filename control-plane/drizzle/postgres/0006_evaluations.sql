CREATE TABLE "evaluations" (
	"id" text PRIMARY KEY NOT NULL,
	"model_id" text NOT NULL,
	"model_sha256" text NOT NULL,
	"dataset_id" text NOT NULL,
	"metrics" jsonb NOT NULL,
	"baseline" jsonb,
	"evaluator" jsonb NOT NULL,
	"created_at" bigint NOT NULL,
	"created_by" text
);
--> statement-breakpoint
ALTER TABLE "evaluations" ADD CONSTRAINT "evaluations_model_id_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "evaluations_model_dataset_idx" ON "evaluations" USING btree ("model_id","dataset_id","created_at");