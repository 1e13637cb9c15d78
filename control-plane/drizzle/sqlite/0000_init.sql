CREATE TABLE `api_tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`role` text NOT NULL,
	`token_hash` text NOT NULL,
	`bootstrap` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_tokens_hash_uq` ON `api_tokens` (`token_hash`);--> statement-breakpoint
CREATE TABLE `dead_letters` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`received_at` integer NOT NULL,
	`device_id` text,
	`topic` text NOT NULL,
	`reason` text NOT NULL,
	`detail` text NOT NULL,
	`payload_size` integer NOT NULL,
	`payload_excerpt` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `devices` (
	`id` text PRIMARY KEY NOT NULL,
	`labels` text NOT NULL,
	`secret_hash` text NOT NULL,
	`enrolled_at` integer NOT NULL,
	`revoked_at` integer,
	`status` text DEFAULT 'unknown' NOT NULL,
	`status_changed_at` integer,
	`status_boot_id` text,
	`status_seq` integer,
	`status_session` integer,
	`boot_ids` text NOT NULL,
	`boot_id` text,
	`last_seen` integer,
	`agent_version` text,
	`keepalive_s` integer,
	`telemetry_interval_s` real,
	`health` text DEFAULT 'unknown' NOT NULL,
	`health_reasons` text NOT NULL,
	`telemetry` text,
	`telemetry_boot_id` text,
	`telemetry_seq` integer,
	`telemetry_at` integer,
	`reported` text,
	`reported_boot_id` text,
	`reported_seq` integer,
	`reported_at` integer,
	`desired` text,
	`desired_version` integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE INDEX `devices_status_idx` ON `devices` (`status`);--> statement-breakpoint
CREATE INDEX `devices_health_idx` ON `devices` (`health`);--> statement-breakpoint
CREATE TABLE `messages` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`device_id` text NOT NULL,
	`channel` text NOT NULL,
	`msg_id` text NOT NULL,
	`boot_id` text NOT NULL,
	`seq` integer NOT NULL,
	`device_ts` integer NOT NULL,
	`received_at` integer NOT NULL,
	`body` text NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `messages_device_msg_uq` ON `messages` (`device_id`,`msg_id`);--> statement-breakpoint
CREATE INDEX `messages_device_channel_ts_idx` ON `messages` (`device_id`,`channel`,`device_ts`);