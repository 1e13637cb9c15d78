CREATE TABLE `dataset_samples` (
	`dataset_id` text NOT NULL,
	`sample_id` text NOT NULL,
	`split` text NOT NULL,
	`annotations` text,
	PRIMARY KEY(`dataset_id`, `sample_id`),
	FOREIGN KEY (`dataset_id`) REFERENCES `datasets`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `dataset_samples_sample_idx` ON `dataset_samples` (`sample_id`);--> statement-breakpoint
CREATE TABLE `datasets` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`version` integer NOT NULL,
	`parent_id` text,
	`query` text NOT NULL,
	`sample_count` integer DEFAULT 0 NOT NULL,
	`created_at` integer NOT NULL,
	`created_by` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `datasets_name_version_uq` ON `datasets` (`name`,`version`);--> statement-breakpoint
CREATE TABLE `sample_uploads` (
	`upload_id` text PRIMARY KEY NOT NULL,
	`device_id` text NOT NULL,
	`metadata` text NOT NULL,
	`image_sha256` text NOT NULL,
	`bytes` integer NOT NULL,
	`offset` integer DEFAULT 0 NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `sample_uploads_device_image_uq` ON `sample_uploads` (`device_id`,`image_sha256`);--> statement-breakpoint
CREATE INDEX `sample_uploads_updated_idx` ON `sample_uploads` (`updated_at`);--> statement-breakpoint
CREATE TABLE `samples` (
	`id` text PRIMARY KEY NOT NULL,
	`device_id` text NOT NULL,
	`site` text,
	`labels` text NOT NULL,
	`model_id` text,
	`model_sha256` text,
	`strategy` text NOT NULL,
	`reason` text NOT NULL,
	`tags` text NOT NULL,
	`predictions` text NOT NULL,
	`frame_ts` integer NOT NULL,
	`boot_id` text NOT NULL,
	`seq` integer NOT NULL,
	`image_sha256` text NOT NULL,
	`bytes` integer NOT NULL,
	`width` integer NOT NULL,
	`height` integer NOT NULL,
	`thumbnail_sha256` text,
	`received_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `samples_device_image_uq` ON `samples` (`device_id`,`image_sha256`);--> statement-breakpoint
CREATE INDEX `samples_received_idx` ON `samples` (`received_at`,`id`);--> statement-breakpoint
CREATE INDEX `samples_device_received_idx` ON `samples` (`device_id`,`received_at`);--> statement-breakpoint
CREATE INDEX `samples_frame_ts_idx` ON `samples` (`frame_ts`);--> statement-breakpoint
CREATE INDEX `samples_image_idx` ON `samples` (`image_sha256`);