package tributary

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// The settings the server knows, and their limits.
var (
	// Backoffs are the retry backoffs the server knows.
	Backoffs = []string{"fixed", "linear", "exponential"}
	// TriggerRules are the trigger rules the server knows.
	TriggerRules = []string{"all_success", "all_done", "one_success", "one_failed", "none_failed"}
	// ConcurrencyStrategies are what a concurrency policy may do with a run
	// started while its key is full.
	ConcurrencyStrategies = []string{"queue", "cancel_newest", "cancel_in_progress"}
)

const (
	// MaxRetryAttempts is the largest retry_attempts.
	MaxRetryAttempts = 100
	// MaxDelayMS is the largest retry_delay_ms and retry_max_delay_ms (one
	// day).
	MaxDelayMS = 86_400_000
	// MaxTimeoutMS is the largest timeout_ms (seven days).
	MaxTimeoutMS = 604_800_000
	// MaxInFlight is the largest max_in_flight (the largest capacity a
	// worker may register).
	MaxInFlight = 10_000
	// MaxLabels is the most required labels of a task (and labels of a
	// worker).
	MaxLabels = 64
	// MaxLabelKeyBytes is the longest label key, in bytes.
	MaxLabelKeyBytes = 63
	// MaxLabelValueBytes is the longest label value, in bytes.
	MaxLabelValueBytes = 256

	// MaxActiveRunsLimit is the largest max_active_runs of a concurrency
	// policy.
	MaxActiveRunsLimit = 10_000
	// MaxPolicyKeyBytes is the longest key_pointer and fixed_key, in bytes.
	MaxPolicyKeyBytes = 128
	// MaxMapKeyBytes is the longest map_over and map_output key, in bytes.
	MaxMapKeyBytes = 256
	// MapMaxInstancesLimit is the largest map_max_instances of a mapped task.
	MapMaxInstancesLimit = 100_000
	// MapElementKey is the key under which an instance of a mapped task
	// finds its element.
	MapElementKey = "map_element"
	// MapIndexKey is the key under which an instance of a mapped task finds
	// its element's 0-based index.
	MapIndexKey = "map_index"

	defaultRetryDelayMS    = 1_000
	defaultRetryMaxDelayMS = 30_000
)

// DefinitionError is an invalid workflow definition; its message is the
// server's for the same definition.
type DefinitionError struct {
	// Message says what is wrong and names the culprit.
	Message string
}

// Error returns the message.
func (e *DefinitionError) Error() string { return e.Message }

func invalid(format string, args ...any) error {
	return &DefinitionError{Message: fmt.Sprintf(format, args...)}
}

// IsValidIdentifier reports whether text is a valid workflow name or task
// id: 1-64 characters of a-z, 0-9, _ and -, starting with a letter.
func IsValidIdentifier(text string) bool {
	if text == "" || len(text) > 64 || text[0] < 'a' || text[0] > 'z' {
		return false
	}
	for _, c := range []byte(text) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// IsValidHandler reports whether text is a valid handler name: 1-128
// characters of a-z, A-Z, 0-9, _, -, ., : and /.
func IsValidHandler(text string) bool {
	if text == "" || len(text) > 128 {
		return false
	}
	for _, c := range []byte(text) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.:/", c) >= 0) {
			return false
		}
	}
	return true
}

// goQuote quotes like the server's messages (Rust's Debug of a string),
// which agrees with %q for the identifiers and names validation reports.
func goQuote(text string) string { return fmt.Sprintf("%q", text) }

func validate(definition WorkflowDefinition) error {
	if !IsValidIdentifier(definition.Name) {
		return invalid("invalid workflow name %s: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter", goQuote(definition.Name))
	}
	if len(definition.Tasks) == 0 {
		return invalid("workflow %s has no tasks", goQuote(definition.Name))
	}
	if definition.Concurrency != nil {
		if problem := checkConcurrency(definition.Concurrency); problem != "" {
			return invalid("workflow %s: concurrency %s", goQuote(definition.Name), problem)
		}
	}
	byID := make(map[string]*TaskDefinition, len(definition.Tasks))
	for index := range definition.Tasks {
		task := &definition.Tasks[index]
		if !IsValidIdentifier(task.ID) {
			return invalid("invalid task id %s: must be 1-64 characters of a-z, 0-9, _ and -, starting with a letter", goQuote(task.ID))
		}
		if err := checkSettings(task); err != nil {
			return err
		}
		if _, seen := byID[task.ID]; seen {
			return invalid("duplicate task id %s", goQuote(task.ID))
		}
		byID[task.ID] = task
	}
	for _, task := range definition.Tasks {
		seen := map[string]bool{}
		for _, dependency := range task.Dependencies {
			if dependency == task.ID {
				return invalid("task %s depends on itself", goQuote(task.ID))
			}
			if _, known := byID[dependency]; !known {
				return invalid("task %s depends on unknown task %s", goQuote(task.ID), goQuote(dependency))
			}
			if seen[dependency] {
				return invalid("task %s lists dependency %s more than once", goQuote(task.ID), goQuote(dependency))
			}
			seen[dependency] = true
		}
	}
	if cycle := findCycle(definition.Tasks); cycle != nil {
		return invalid("cycle detected: %s", strings.Join(cycle, " -> "))
	}
	return nil
}

// checkConcurrency says what is wrong with a concurrency policy, in the
// server's words, or returns "".
func checkConcurrency(policy *ConcurrencyPolicy) string {
	pointer, fixedKey := policy.KeyPointer, policy.FixedKey
	switch {
	case pointer == "" && fixedKey == "":
		return "needs one of key_pointer and fixed_key"
	case pointer != "" && fixedKey != "":
		return "has both key_pointer and fixed_key; set one"
	case pointer != "":
		if len(pointer) > MaxPolicyKeyBytes {
			return fmt.Sprintf("key_pointer is %d bytes, over the limit of %d", len(pointer), MaxPolicyKeyBytes)
		}
		escapesValid := true
		for index := 0; index < len(pointer); index++ {
			if pointer[index] == '~' && (index+1 >= len(pointer) || (pointer[index+1] != '0' && pointer[index+1] != '1')) {
				escapesValid = false
			}
		}
		if !strings.HasPrefix(pointer, "/") || strings.ContainsRune(pointer, 0) || !escapesValid {
			return fmt.Sprintf("key_pointer %s is not a JSON pointer: must start with / and use ~ only in ~0 and ~1", goQuote(pointer))
		}
	default:
		if len(fixedKey) > MaxPolicyKeyBytes {
			return fmt.Sprintf("fixed_key is %d bytes, over the limit of %d", len(fixedKey), MaxPolicyKeyBytes)
		}
		if strings.ContainsRune(fixedKey, 0) {
			return "fixed_key contains U+0000"
		}
	}
	if limit := policy.MaxActiveRuns; limit != nil && (*limit < 1 || *limit > MaxActiveRunsLimit) {
		return fmt.Sprintf("max_active_runs must be between 1 and %d, got %d", MaxActiveRunsLimit, *limit)
	}
	if policy.Strategy != "" && !slices.Contains(ConcurrencyStrategies, policy.Strategy) {
		return fmt.Sprintf("unknown strategy %s; expected one of queue, cancel_newest, cancel_in_progress", goQuote(policy.Strategy))
	}
	return ""
}

func checkSettings(task *TaskDefinition) error {
	inRange := func(field string, value, low, high int64) error {
		if value < low || value > high {
			return invalid("task %s: %s must be between %d and %d, got %d", goQuote(task.ID), field, low, high, value)
		}
		return nil
	}
	if task.RetryAttempts != nil {
		if err := inRange("retry_attempts", int64(*task.RetryAttempts), 0, MaxRetryAttempts); err != nil {
			return err
		}
	}
	delay := int64(defaultRetryDelayMS)
	if task.RetryDelayMS != nil {
		if err := inRange("retry_delay_ms", *task.RetryDelayMS, 0, MaxDelayMS); err != nil {
			return err
		}
		delay = *task.RetryDelayMS
	}
	maxDelay := max(int64(defaultRetryMaxDelayMS), delay)
	if task.RetryMaxDelayMS != nil {
		if err := inRange("retry_max_delay_ms", *task.RetryMaxDelayMS, 0, MaxDelayMS); err != nil {
			return err
		}
		maxDelay = *task.RetryMaxDelayMS
	}
	if maxDelay < delay {
		return invalid("task %s: retry_max_delay_ms (%d) must be at least retry_delay_ms (%d)", goQuote(task.ID), maxDelay, delay)
	}
	if task.TimeoutMS != nil {
		if err := inRange("timeout_ms", *task.TimeoutMS, 1, MaxTimeoutMS); err != nil {
			return err
		}
	}
	if task.MaxInFlight != nil {
		if err := inRange("max_in_flight", int64(*task.MaxInFlight), 1, MaxInFlight); err != nil {
			return err
		}
	}
	if task.RetryBackoff != "" && !slices.Contains(Backoffs, task.RetryBackoff) {
		return invalid("task %s: unknown retry_backoff %s; expected one of fixed, linear, exponential", goQuote(task.ID), goQuote(task.RetryBackoff))
	}
	if task.TriggerRule != "" && !slices.Contains(TriggerRules, task.TriggerRule) {
		return invalid("task %s: unknown trigger_rule %s; expected one of all_success, all_done, one_success, one_failed, none_failed", goQuote(task.ID), goQuote(task.TriggerRule))
	}
	if task.Handler != "" && !IsValidHandler(task.Handler) {
		return invalid("task %s: invalid handler %s: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /", goQuote(task.ID), goQuote(task.Handler))
	}
	if problem := CheckLabels(task.RequiredLabels); problem != "" {
		return invalid("task %s: required_labels %s", goQuote(task.ID), problem)
	}
	if problem := checkMap(task); problem != "" {
		return invalid("task %s: %s", goQuote(task.ID), problem)
	}
	return nil
}

// checkMap says what is wrong with a task's map fields; "" when nothing is.
func checkMap(task *TaskDefinition) string {
	if task.MapOver == "" {
		if task.MapOutput != "" {
			return "map_output is set but map_over is not"
		}
		if task.MapMaxInstances != nil {
			return "map_max_instances is set but map_over is not"
		}
		return ""
	}
	for _, field := range []struct{ name, key string }{{"map_over", task.MapOver}, {"map_output", task.MapOutput}} {
		if len(field.key) > MaxMapKeyBytes {
			return fmt.Sprintf("%s is %d bytes, over the limit of %d", field.name, len(field.key), MaxMapKeyBytes)
		}
		if strings.ContainsRune(field.key, 0) {
			return field.name + " contains U+0000"
		}
	}
	if limit := task.MapMaxInstances; limit != nil && (*limit < 1 || *limit > MapMaxInstancesLimit) {
		return fmt.Sprintf("map_max_instances must be between 1 and %d, got %d", MapMaxInstancesLimit, *limit)
	}
	return ""
}

// CheckLabels says what is wrong with a set of labels by the server's rule
// for workers' labels and tasks' required labels (checked in key order, as
// the server does), naming the label; "" when nothing is.
func CheckLabels(labels map[string]string) string {
	if len(labels) > MaxLabels {
		return fmt.Sprintf("has %d labels, over the limit of %d", len(labels), MaxLabels)
	}
	keys := make([]string, 0, len(labels))
	for key := range labels {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		value := labels[key]
		switch {
		case key == "":
			return "has an empty key"
		case len(key) > MaxLabelKeyBytes:
			return fmt.Sprintf("key %s is %d bytes, over the limit of %d", goQuote(key), len(key), MaxLabelKeyBytes)
		case strings.ContainsRune(key, 0):
			return fmt.Sprintf("key %s contains U+0000", goQuote(key))
		case len(value) > MaxLabelValueBytes:
			return fmt.Sprintf("value of %s is %d bytes, over the limit of %d", goQuote(key), len(value), MaxLabelValueBytes)
		case strings.ContainsRune(value, 0):
			return fmt.Sprintf("value of %s contains U+0000", goQuote(key))
		}
	}
	return ""
}

// findCycle returns the cycle the server reports, or nil: within the
// strongly connected component whose sorted ids are smallest, a depth-first
// path from its smallest id along sorted dependants back to it.
func findCycle(tasks []TaskDefinition) []string {
	dependants := map[string][]string{}
	ids := make([]string, 0, len(tasks))
	for _, task := range tasks {
		ids = append(ids, task.ID)
		for _, dependency := range task.Dependencies {
			dependants[dependency] = append(dependants[dependency], task.ID)
		}
	}
	sort.Strings(ids)
	for _, list := range dependants {
		sort.Strings(list)
	}
	var best []string
	for _, component := range stronglyConnected(ids, dependants) {
		if len(component) < 2 {
			continue
		}
		sort.Strings(component)
		if best == nil || slices.Compare(component, best) < 0 {
			best = component
		}
	}
	if best == nil {
		return nil
	}
	members := map[string]bool{}
	for _, id := range best {
		members[id] = true
	}
	successors := func(id string) []string {
		var next []string
		for _, dependant := range dependants[id] {
			if members[dependant] {
				next = append(next, dependant)
			}
		}
		return next
	}
	start := best[0]
	path := []string{start}
	visited := map[string]bool{start: true}
	choices := []int{0}
	for len(path) > 0 {
		current := path[len(path)-1]
		candidates := successors(current)
		if slices.Contains(candidates, start) {
			return append(slices.Clone(path), start)
		}
		choice := &choices[len(choices)-1]
		if *choice < len(candidates) {
			next := candidates[*choice]
			*choice++
			if !visited[next] {
				visited[next] = true
				path = append(path, next)
				choices = append(choices, 0)
			}
		} else {
			path = path[:len(path)-1]
			choices = choices[:len(choices)-1]
		}
	}
	return nil
}

// stronglyConnected is Tarjan's algorithm, iterative so that a chain of
// 50,000 tasks cannot exhaust the stack.
func stronglyConnected(ids []string, edges map[string][]string) [][]string {
	index := map[string]int{}
	low := map[string]int{}
	onStack := map[string]bool{}
	var stack []string
	var components [][]string
	next := 0
	type frame struct {
		id    string
		child int
	}
	for _, root := range ids {
		if _, seen := index[root]; seen {
			continue
		}
		frames := []frame{{id: root}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(frames) > 0 {
			top := &frames[len(frames)-1]
			children := edges[top.id]
			if top.child < len(children) {
				child := children[top.child]
				top.child++
				if _, seen := index[child]; !seen {
					index[child], low[child] = next, next
					next++
					stack = append(stack, child)
					onStack[child] = true
					frames = append(frames, frame{id: child})
				} else if onStack[child] {
					low[top.id] = min(low[top.id], index[child])
				}
				continue
			}
			id := top.id
			frames = frames[:len(frames)-1]
			if len(frames) > 0 {
				parent := frames[len(frames)-1].id
				low[parent] = min(low[parent], low[id])
			}
			if low[id] == index[id] {
				var component []string
				for {
					member := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					onStack[member] = false
					component = append(component, member)
					if member == id {
						break
					}
				}
				components = append(components, component)
			}
		}
	}
	return components
}
