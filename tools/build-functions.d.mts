export declare const DEFAULT_FUNCTIONS_DIR: string;
export declare function functionNames(): Promise<string[]>;
export declare function buildFunctions(options?: { force?: boolean; outDir?: string }): Promise<Record<string, string>>;
