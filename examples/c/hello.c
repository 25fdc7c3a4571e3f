/* A user program for lde in C, without a C library: lde's system calls are made with the
 * `syscall` instruction (number in rax, arguments in rdi, rsi, rdx; see the README).
 *
 * Build (static, not position-independent, linked at 0x80_0000_0000 where user space starts):
 *   gcc -O2 -static -nostdlib -ffreestanding -fno-pic -no-pie -mcmodel=large \
 *       -fno-asynchronous-unwind-tables -Wl,-Ttext-segment=0x8000000000 -o hello-c hello.c
 * Run:
 *   lde run --program hello-c
 */

enum { SYS_WRITE = 1, SYS_EXIT = 2, SYS_GETPID = 3 };

static long lde_syscall(long number, long a, long b, long c)
{
    long result;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return result;
}

static unsigned long length(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
}

static void print(const char *s)
{
    lde_syscall(SYS_WRITE, 1, (long)s, (long)length(s));
}

/* The kernel starts a process here, with argc, argv and envp on the stack (System V). */
__attribute__((noreturn)) void _start(void)
{
    long pid = lde_syscall(SYS_GETPID, 0, 0, 0);
    char digit[2] = {(char)('0' + pid % 10), 0};
    print("hello from C in ring 3, pid ");
    print(digit);
    print("\n");
    lde_syscall(SYS_EXIT, 0, 0, 0);
    for (;;) {
    }
}
