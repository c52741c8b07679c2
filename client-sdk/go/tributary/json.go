package tributary

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// encodeJSON encodes v as compact JSON text without HTML escaping, so text
// travels as written. json.Number, json.RawMessage and *big.Int keep their
// digits exactly.
func encodeJSON(v any) (json.RawMessage, error) {
	var buffer bytes.Buffer
	encoder := json.NewEncoder(&buffer)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buffer.Bytes(), "\n"), nil
}

// Decode reads JSON text into a T with UseNumber, so numbers read into `any`
// become [json.Number] and keep every digit; the whole text must be one
// value.
func Decode[T any](text []byte) (T, error) {
	var value T
	decoder := json.NewDecoder(bytes.NewReader(text))
	decoder.UseNumber()
	if err := decoder.Decode(&value); err != nil {
		return value, err
	}
	if _, err := decoder.Token(); err != io.EOF {
		return value, fmt.Errorf("unexpected data after the JSON value")
	}
	return value, nil
}

// typeName is how errors name the type a value was read as.
func typeName[T any]() string {
	return reflect.TypeFor[T]().String()
}

// parseObject splits JSON text of an object into its top-level values,
// kept as text. Empty text is the empty object.
func parseObject(text string) (map[string]json.RawMessage, error) {
	trimmed := strings.TrimSpace(text)
	if trimmed == "" {
		return map[string]json.RawMessage{}, nil
	}
	if !strings.HasPrefix(trimmed, "{") {
		return nil, fmt.Errorf("a context must be a JSON object, got %s", excerpt(trimmed))
	}
	values, err := Decode[map[string]json.RawMessage]([]byte(trimmed))
	if err != nil {
		return nil, err
	}
	if values == nil {
		values = map[string]json.RawMessage{}
	}
	return values, nil
}

// objectJSON writes values as one JSON object with sorted keys; the values
// are already compact JSON text.
func objectJSON(values map[string]json.RawMessage) (string, error) {
	keys := make([]string, 0, len(values))
	size := 2
	for key, value := range values {
		keys = append(keys, key)
		size += len(key) + len(value) + 4
	}
	sort.Strings(keys)
	var out strings.Builder
	out.Grow(size)
	out.WriteByte('{')
	for index, key := range keys {
		if index > 0 {
			out.WriteByte(',')
		}
		quoted, err := encodeJSON(key)
		if err != nil {
			return "", err
		}
		out.Write(quoted)
		out.WriteByte(':')
		out.Write(values[key])
	}
	out.WriteByte('}')
	return out.String(), nil
}

// excerpt cuts text for error messages, which never echo unbounded input.
func excerpt(text string) string {
	const limit = 64
	if len(text) <= limit {
		return text
	}
	cut := limit
	for cut > 0 && !isRuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
