CREATE TABLE `model_lineage` (
	`model_id` text PRIMARY KEY NOT NULL,
	`model_sha256` text NOT NULL,
	`dataset_id` text,
	`parent_sha256` text,
	`run_id` text,
	`trainer` text,
	`flags` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`model_id`) REFERENCES `models`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `model_lineage_parent_idx` ON `model_lineage` (`parent_sha256`);--> statement-breakpoint
CREATE INDEX `model_lineage_run_idx` ON `model_lineage` (`run_id`);--> statement-breakpoint
CREATE INDEX `model_lineage_dataset_idx` ON `model_lineage` (`dataset_id`);