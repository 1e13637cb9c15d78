CREATE TABLE `drift_references` (
	`scope` text NOT NULL,
	`key` text NOT NULL,
	`model_sha256` text NOT NULL,
	`model_id` text,
	`source` text NOT NULL,
	`dataset_id` text,
	`from_at` integer,
	`to_at` integer,
	`complete` integer DEFAULT false NOT NULL,
	`sums` text NOT NULL,
	`state` text,
	`updated_at` integer NOT NULL,
	`updated_by` text,
	PRIMARY KEY(`scope`, `key`, `model_sha256`)
);
--> statement-breakpoint
CREATE TABLE `drift_sampling_boosts` (
	`site` text PRIMARY KEY NOT NULL,
	`previous` text,
	`raised` text NOT NULL,
	`raised_at` integer NOT NULL,
	`reason` text NOT NULL
);
