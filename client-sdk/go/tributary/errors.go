package tributary

import (
	"errors"
	"fmt"
)

// ErrNonRetryable marks a task failure that retrying cannot fix. A handler
// returns an error that matches it with [errors.Is] (see [NonRetryable]) to
// fail its task at once, whatever its retry budget; every other error is
// retried while the budget allows.
var ErrNonRetryable = errors.New("non-retryable")

// NonRetryableError wraps the error of a task that must not be retried. It
// matches [ErrNonRetryable] with [errors.Is] and unwraps to its cause.
type NonRetryableError struct {
	// Err is the cause; its message is the failure's message.
	Err error
}

// Error returns the cause's message.
func (e *NonRetryableError) Error() string {
	if e.Err == nil {
		return "non-retryable failure"
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *NonRetryableError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrNonRetryable].
func (e *NonRetryableError) Is(target error) bool { return target == ErrNonRetryable }

// NonRetryable wraps err so that the attempt fails without retry. It
// returns nil for a nil err.
func NonRetryable(err error) error {
	if err == nil {
		return nil
	}
	return &NonRetryableError{Err: err}
}

// NonRetryablef formats a message (with %w support) into a non-retryable
// error.
func NonRetryablef(format string, args ...any) error {
	return &NonRetryableError{Err: fmt.Errorf(format, args...)}
}

// IsRetryable reports whether a task failure with err may be retried: every
// error but those matching [ErrNonRetryable].
func IsRetryable(err error) bool { return !errors.Is(err, ErrNonRetryable) }
