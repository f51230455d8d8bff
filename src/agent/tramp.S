/*
 * The hooks' trampolines (hook.c, hook.h).
 *
 * mt_hook_tramp: every hook's stub (made by hook.c near the hooked
 * function) loads the hook's id into r11 and jumps here, at the function's
 * entry: [rsp] is the return address and rsp % 16 == 8.  It saves the
 * argument registers, rax (the vector-register count of a variadic call) and
 * xmm0-7 (float arguments), calls mt_hook_dispatch(id, saved registers,
 * &return address), which runs the hook's entry callback (and may swap the
 * return address for mt_hook_ret), restores everything and jumps where
 * dispatch said: the trampoline with the function's displaced first
 * instructions, or the real function.  So no signature is needed.  r11 is
 * free at a call boundary in the SysV ABI; r10 (the static chain) is kept.
 *
 * mt_hook_ret: a return-hooked function returns here (rsp % 16 == 0).  It
 * keeps the return registers (rax, rdx, xmm0, xmm1), calls
 * mt_hook_leave(where the return address was, rax), which runs the return
 * callback and gives back the real return address (from the shadow stack),
 * and returns there.  An unwinder that meets mt_hook_ret as a return address
 * finds CFI that ends the stack (the return address column is undefined)
 * rather than none; C++ exceptions never meet it: hook.c puts the real
 * return addresses back before an unwind (mt_hook_unwind_thread).
 */
	.text
	.globl	mt_hook_tramp
	.hidden	mt_hook_tramp
	.type	mt_hook_tramp, @function
mt_hook_tramp:
	.cfi_startproc
	pushq	%rbp
	.cfi_def_cfa_offset 16
	.cfi_offset %rbp, -16
	movq	%rsp, %rbp
	.cfi_def_cfa_register %rbp
	pushq	%rdi
	pushq	%rsi
	pushq	%rdx
	pushq	%rcx
	pushq	%r8
	pushq	%r9
	pushq	%rax
	pushq	%r11
	subq	$128, %rsp
	movdqu	%xmm0, 0(%rsp)
	movdqu	%xmm1, 16(%rsp)
	movdqu	%xmm2, 32(%rsp)
	movdqu	%xmm3, 48(%rsp)
	movdqu	%xmm4, 64(%rsp)
	movdqu	%xmm5, 80(%rsp)
	movdqu	%xmm6, 96(%rsp)
	movdqu	%xmm7, 112(%rsp)
	movq	%r11, %rdi
	leaq	128(%rsp), %rsi	/* r11, rax, r9, r8, rcx, rdx, rsi, rdi */
	leaq	8(%rbp), %rdx	/* the return address */
	call	mt_hook_dispatch
	movq	%rax, 128(%rsp)	/* popped into r11 below */
	movdqu	0(%rsp), %xmm0
	movdqu	16(%rsp), %xmm1
	movdqu	32(%rsp), %xmm2
	movdqu	48(%rsp), %xmm3
	movdqu	64(%rsp), %xmm4
	movdqu	80(%rsp), %xmm5
	movdqu	96(%rsp), %xmm6
	movdqu	112(%rsp), %xmm7
	addq	$128, %rsp
	popq	%r11
	popq	%rax
	popq	%r9
	popq	%r8
	popq	%rcx
	popq	%rdx
	popq	%rsi
	popq	%rdi
	popq	%rbp
	.cfi_def_cfa %rsp, 8
	jmp	*%r11
	.cfi_endproc
	.size	mt_hook_tramp, .-mt_hook_tramp

	.globl	mt_hook_ret
	.hidden	mt_hook_ret
	.type	mt_hook_ret, @function
	.cfi_startproc
	.cfi_undefined rip
	/* An unwinder looks up a return address minus one: this byte. */
	nop
mt_hook_ret:
	subq	$8, %rsp	/* back over the slot the return address was in */
	pushq	%rax
	pushq	%rdx
	subq	$40, %rsp
	movdqu	%xmm0, 0(%rsp)
	movdqu	%xmm1, 16(%rsp)
	leaq	56(%rsp), %rdi
	movq	%rax, %rsi
	call	mt_hook_leave
	movq	%rax, 56(%rsp)	/* the real return address, where it was */
	movdqu	0(%rsp), %xmm0
	movdqu	16(%rsp), %xmm1
	addq	$40, %rsp
	popq	%rdx
	popq	%rax
	ret
	.cfi_endproc
	.size	mt_hook_ret, .-mt_hook_ret
	.section .note.GNU-stack,"",@progbits
