/* Prints what it was built for and what it runs on: the two differ when something is wrong. */
#include <stdio.h>
#include <sys/utsname.h>

#if defined(__aarch64__)
#define BUILT_FOR "aarch64"
#elif defined(__arm__) && defined(__ARM_ARCH)
#define STR2(x) #x
#define STR(x) STR2(x)
#define BUILT_FOR "armv" STR(__ARM_ARCH)
#elif defined(__riscv) && __riscv_xlen == 64
#define BUILT_FOR "riscv64"
#elif defined(__x86_64__)
#define BUILT_FOR "x86_64"
#elif defined(__i386__)
#define BUILT_FOR "i386"
#else
#define BUILT_FOR "another architecture"
#endif

int main(void) {
    struct utsname u;
    if (uname(&u) != 0) {
        perror("uname");
        return 1;
    }
    printf("hello from C, built for %s, running on %s\n", BUILT_FOR, u.machine);
    return 0;
}
