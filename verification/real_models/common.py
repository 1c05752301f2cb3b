"""What the real-model checks of every model share: the token domains of Theorem 4.1 and one BLAS thread."""

from __future__ import annotations

import contextlib

#: token sources of Theorem 4.1: plain sentences of three domains
DOMAINS = {
    "movie": ["A moving, beautifully acted film with a haunting score.",
              "The plot drags and the dialogue feels wooden.",
              "I laughed through the whole second act.",
              "The director wastes a brilliant cast on a thin script.",
              "Stunning cinematography, but the ending falls flat.",
              "One of the best thrillers of the decade."],
    "medical": ["Patient reports crushing chest pain radiating to the left arm.",
                "Blood pressure 150 over 95, heart rate 88, afebrile.",
                "Prescribed amoxicillin 500 mg three times daily for seven days.",
                "History of type 2 diabetes and chronic kidney disease.",
                "MRI shows a small lesion in the left temporal lobe.",
                "Follow up in two weeks with repeat blood tests."],
    "code": ["def add(a, b): return a + b",
             "for i in range(10): print(i)",
             "SELECT name FROM users WHERE id = 1;",
             "fn main() { println!(\"hello\"); }",
             "const xs = arr.map(x => x * 2);",
             "if (err != nil) { return err }"],
}


def one_blas_thread():
    """One BLAS thread for the small float64 matrices here (threadpoolctl, if installed).

    The matrices are at most a few hundred wide; a multi-threaded BLAS only adds
    synchronisation, and on a loaded machine it oversubscribes the cores (measured:
    10x slower). Without threadpoolctl this is a no-op.
    """
    try:
        from threadpoolctl import threadpool_limits  # here: threadpoolctl is optional
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
