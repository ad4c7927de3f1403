/* cpu.h — tiny CPU helpers shared by spinning code (ring lock, benches). */
#ifndef TLCM_CPU_H
#define TLCM_CPU_H

/* Tell the core we are spinning (lets a sibling thread run, saves power). */
#if defined(__x86_64__) || defined(__i386__)
#define tlcm_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define tlcm_cpu_relax() __asm__ volatile("yield")
#else
#define tlcm_cpu_relax() ((void)0)
#endif

#endif
