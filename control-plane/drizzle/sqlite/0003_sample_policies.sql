CREATE TABLE `sample_policies` (
	`selector_key` text PRIMARY KEY NOT NULL,
	`selector` text NOT NULL,
	`policy` text NOT NULL,
	`updated_at` integer NOT NULL,
	`updated_by` text
);
