import packageJson from '../package.json' with { type: 'json' };

/** The agent's version, from its package.json (reported in birth and Reported messages). */
export const AGENT_VERSION: string = packageJson.version;
