ALTER TABLE `devices` ADD `secret_hash_next` text;--> statement-breakpoint
ALTER TABLE `devices` ADD `secret_next_deadline` integer;--> statement-breakpoint
ALTER TABLE `devices` ADD `auth_method` text DEFAULT 'secret' NOT NULL;--> statement-breakpoint
ALTER TABLE `devices` ADD `cert_fingerprint` text;--> statement-breakpoint
ALTER TABLE `messages` ADD `clock_skew` integer DEFAULT false NOT NULL;--> statement-breakpoint
CREATE INDEX `messages_device_channel_received_idx` ON `messages` (`device_id`,`channel`,`received_at`,`seq`);