//go:build linux

package fdlimit

import (
	"fmt"
	"syscall"
)

func raise(want uint64) (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("reading the open file limit: %w", err)
	}
	soft, hard = uint64(lim.Cur), uint64(lim.Max)
	if want == 0 {
		want = hard
	}
	if want <= soft {
		return soft, hard, nil
	}
	next := lim
	next.Cur = want
	if want > hard {
		next.Max = want
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		if want <= hard {
			return soft, hard, fmt.Errorf("raising the open file limit to %d: %w", want, err)
		}
		// Not allowed above the hard limit: take what is allowed.
		err = fmt.Errorf("raising the open file limit to %d, above the hard limit %d: %w", want, hard, err)
		if soft < hard {
			next = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
			if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next) == nil {
				soft = hard
			}
		}
		return soft, hard, err
	}
	return uint64(next.Cur), uint64(next.Max), nil
}
