/**
 * What a behaviour profile measures: counted rates (per sliding window of
 * guest time) and sets of things touched. One list, used by the observer,
 * the learner, the profile schema and the detector.
 */
import { EXIT_REASONS } from '../exits.js';

/** Rates: exits by reason, serial bytes, pages dirtied, code pages executed for the first time. */
export const RATE_METRICS = [...EXIT_REASONS.map((r) => `exits.${r}` as const), 'serial.com1', 'serial.com2', 'dirtyPages', 'newCodePages'] as const;
export type RateMetric = (typeof RATE_METRICS)[number];

/** Sets: what the guest touched at all. */
export const SET_METRICS = ['ioPorts', 'msrs', 'hypercalls', 'interruptVectors', 'codePages'] as const;
export type SetMetric = (typeof SET_METRICS)[number];

export type RateCounts = Record<RateMetric, number>;

export const emptyRateCounts = (): RateCounts => Object.fromEntries(RATE_METRICS.map((m) => [m, 0])) as RateCounts;

/** Default sliding window: 10 buckets of 100 ms of guest time. */
export const DEFAULT_BUCKET_MS = 100;
export const DEFAULT_WINDOW_MS = 1000;
