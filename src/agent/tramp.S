/*
 * The generic entry trampoline for `-f FUNC`: records a call's arguments and
 * tail-jumps to the real function, so the function's signature need not be
 * known.  Each hooked function gets a 32-byte stub (made by custom.c) that
 * loads its index into r11 and jumps here.  r11 is free at a call boundary
 * in the SysV ABI; r10 (the static chain) is caller-saved too.
 *
 * At entry rsp % 16 == 8.  Saved: the six argument registers, rax (the
 * vector-register count of a variadic call) and xmm0-7 (float arguments).
 */
	.text
	.globl	mt_tramp_common
	.hidden	mt_tramp_common
	.type	mt_tramp_common, @function
mt_tramp_common:
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
	call	mt_custom_enter
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
	leaq	mt_custom_real(%rip), %r10
	jmp	*(%r10,%r11,8)
	.cfi_endproc
	.size	mt_tramp_common, .-mt_tramp_common
	.section .note.GNU-stack,"",@progbits
