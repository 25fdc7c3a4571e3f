# GDB commands for the lde kernel, sourced by scripts/gdb.sh (and tests/gdb.rs):
#   lde-trapframe   the running process's TrapFrame: what the CPU and the entry path saved
#   lde-pid         the pid of the running process (0: the kernel or idle)
# They read raw memory at offsets that tests/gdb.rs checks against the kernel's types: the
# kernel's debug information is "limited" (lines and functions, no types; see
# guest/kernel/Cargo.toml), so GDB cannot print its structs by name.
set confirm off
set pagination off
# Casts below use C syntax; Rust frames still show Rust names and source lines.
set language c

# TrapFrame (guest/kernel/src/arch/x86_64/entry.rs): 22 qwords, r15 first; a trap from ring 3
# leaves it at the top of the process's kernel stack, which processor 0's per-CPU data holds
# (LDE_PER_CPU[0].syscall_rsp, at this offset; GDB debugs one processor).
set $lde_trapframe_size = 176
set $lde_syscall_rsp_offset = 8
# StatsPage.cpus[0].current_pid (guest/abi/src/stats.rs): processor 0's, a u32 at this offset
# from LDE_STATS.
set $lde_current_pid_offset = 2460

define lde-trapframe
  set $lde_tf = (unsigned long *)(*(unsigned long *)((char *)&LDE_PER_CPU + $lde_syscall_rsp_offset) - $lde_trapframe_size)
  printf "TrapFrame at %#lx (the running process's, top of its kernel stack)\n", $lde_tf
  # A system call's frame (vector 0x100: `syscall`, 0x80: `int 0x80`) holds only the registers
  # the kernel's code may change; RBX, RBP and R12-R15 stay in the registers (entry.rs).
  if $lde_tf[15] == 0x100 || $lde_tf[15] == 0x80
    printf "  rax %#018lx rcx %#018lx rdx %#018lx rsi %#018lx\n", $lde_tf[14], $lde_tf[12], $lde_tf[11], $lde_tf[10]
    printf "  rdi %#018lx r8  %#018lx r9  %#018lx r10 %#018lx\n", $lde_tf[9], $lde_tf[7], $lde_tf[6], $lde_tf[5]
    printf "  r11 %#018lx\n", $lde_tf[4]
    printf "  rbx rbp r12 r13 r14 r15: not saved by a system call's entry (the kernel's code gives them back)\n"
  else
    printf "  rax %#018lx rbx %#018lx rcx %#018lx rdx %#018lx\n", $lde_tf[14], $lde_tf[13], $lde_tf[12], $lde_tf[11]
    printf "  rsi %#018lx rdi %#018lx rbp %#018lx r8  %#018lx\n", $lde_tf[10], $lde_tf[9], $lde_tf[8], $lde_tf[7]
    printf "  r9  %#018lx r10 %#018lx r11 %#018lx r12 %#018lx\n", $lde_tf[6], $lde_tf[5], $lde_tf[4], $lde_tf[3]
    printf "  r13 %#018lx r14 %#018lx r15 %#018lx\n", $lde_tf[2], $lde_tf[1], $lde_tf[0]
  end
  printf "  vector %#lx error %#lx\n", $lde_tf[15], $lde_tf[16]
  printf "  rip %#018lx cs %#lx rflags %#lx rsp %#018lx ss %#lx\n", $lde_tf[17], $lde_tf[18], $lde_tf[19], $lde_tf[20], $lde_tf[21]
end
document lde-trapframe
Print the running process's TrapFrame (its user registers as the kernel saw them on entry).
Valid while the kernel handles a trap from ring 3 (a system call, a fault, an interrupt); a
system call's frame holds all but RBX, RBP and R12-R15.
end

define lde-pid
  printf "pid %u\n", *(unsigned int *)((char *)&LDE_STATS + $lde_current_pid_offset)
end
document lde-pid
Print the pid of the running process from the kernel's stats page (0: the kernel or idle).
end
