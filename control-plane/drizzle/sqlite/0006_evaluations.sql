CREATE TABLE `evaluations` (
	`id` text PRIMARY KEY NOT NULL,
	`model_id` text NOT NULL,
	`model_sha256` text NOT NULL,
	`dataset_id` text NOT NULL,
	`metrics` text NOT NULL,
	`baseline` text,
	`evaluator` text NOT NULL,
	`created_at` integer NOT NULL,
	`created_by` text,
	FOREIGN KEY (`model_id`) REFERENCES `models`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `evaluations_model_dataset_idx` ON `evaluations` (`model_id`,`dataset_id`,`created_at`);