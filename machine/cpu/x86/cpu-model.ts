/**
 * The Unicorn CPU model every engine runs. QEMU's TCG decides from the model's
 * feature words which instructions execute and which raise #UD. The default
 * model (qemu64) has no SSSE3, SSE4.x, POPCNT, AES, PCLMULQDQ, LZCNT or RDTSCP,
 * so a guest that CPUID told they exist (Linux with POPCNT) died with #UD.
 *
 * Opteron_G5 is the richest Unicorn 2.1 model that keeps two things we rely on:
 * - SVM in its feature words: our MSR exits and native interrupt delivery run
 *   the vCPU in QEMU's SVM guest mode (msr-intercept.ts, native-irq.ts), which
 *   an Intel model (Skylake, Icelake) refuses (EFER.SVME stays clear);
 * - no MONITOR: MONITOR/MWAIT must raise #UD inside the engine, which is how we
 *   emulate them; EPYC models run MWAIT as a native halt that no store wakes.
 * What the richer models add on top (MOVBE, RDRAND, BMI1/2, ADX, FSGSBASE,
 * CLFLUSHOPT) Linux does not need. Measured per model: docs/conformance.md.
 *
 * The model only decides what executes: the identity a guest sees (vendor,
 * family, model) is our CPUID (cpuid.ts), which keeps QEMU's qemu64 identity,
 * AMD like this model.
 */
/** uc_cpu_x86 UC_CPU_X86_OPTERON_G5 (unicorn/x86.h, 2.1). */
export const UC_CPU_X86_OPTERON_G5 = 34;

export const X86_CPU_MODEL = UC_CPU_X86_OPTERON_G5;
