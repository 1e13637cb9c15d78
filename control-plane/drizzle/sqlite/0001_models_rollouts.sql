CREATE TABLE `models` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`version` text NOT NULL,
	`sha256` text NOT NULL,
	`size_bytes` integer NOT NULL,
	`release_counter` integer NOT NULL,
	`adapter` text NOT NULL,
	`key_id` text NOT NULL,
	`issued_at` integer NOT NULL,
	`expires_at` integer NOT NULL,
	`signed` text NOT NULL,
	`manifest` text NOT NULL,
	`created_at` integer NOT NULL,
	`uploaded_by` text
);
--> statement-breakpoint
CREATE INDEX `models_name_idx` ON `models` (`name`);--> statement-breakpoint
CREATE INDEX `models_sha256_idx` ON `models` (`sha256`);--> statement-breakpoint
CREATE TABLE `rollout_devices` (
	`rollout_id` text NOT NULL,
	`device_id` text NOT NULL,
	`mode` text NOT NULL,
	`stage_index` integer NOT NULL,
	`state` text NOT NULL,
	`previous` text,
	`assigned_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`reason` text,
	PRIMARY KEY(`rollout_id`, `device_id`),
	FOREIGN KEY (`rollout_id`) REFERENCES `rollouts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `rollout_devices_device_idx` ON `rollout_devices` (`device_id`);--> statement-breakpoint
CREATE TABLE `rollout_events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`rollout_id` text NOT NULL,
	`at` integer NOT NULL,
	`type` text NOT NULL,
	`stage` text,
	`data` text NOT NULL,
	FOREIGN KEY (`rollout_id`) REFERENCES `rollouts`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `rollout_events_rollout_idx` ON `rollout_events` (`rollout_id`,`id`);--> statement-breakpoint
CREATE TABLE `rollouts` (
	`id` text PRIMARY KEY NOT NULL,
	`model_id` text NOT NULL,
	`spec` text NOT NULL,
	`status` text NOT NULL,
	`stage_index` integer NOT NULL,
	`stage_started_at` integer NOT NULL,
	`failing_windows` integer DEFAULT 0 NOT NULL,
	`last_evaluated_at` integer,
	`cohorts` text NOT NULL,
	`reason` text,
	`version` integer DEFAULT 1 NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`created_by` text,
	FOREIGN KEY (`model_id`) REFERENCES `models`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `rollouts_status_idx` ON `rollouts` (`status`);--> statement-breakpoint
CREATE INDEX `rollouts_created_idx` ON `rollouts` (`created_at`);--> statement-breakpoint
CREATE INDEX `messages_channel_received_idx` ON `messages` (`channel`,`received_at`);