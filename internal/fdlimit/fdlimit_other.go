//go:build !linux

package fdlimit

import "errors"

func raise(uint64) (soft, hard uint64, err error) {
	return 0, 0, errors.ErrUnsupported
}
