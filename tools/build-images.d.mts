export function buildImages(opts?: { force?: boolean; quiet?: boolean }): Promise<{ firmware: { rom: string; payload: string }; guests: Record<string, string> }>;
