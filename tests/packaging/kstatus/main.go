// kstatus prints what Flux's health checks (sigs.k8s.io/cli-utils/pkg/kstatus) make of objects:
// stdin is a JSON list of Kubernetes objects, stdout a JSON list of {"status", "message"}.
// Built and run by tests/packaging/test_gitops_cluster.py.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stdin:", err)
		os.Exit(2)
	}
	// apimachinery's decoder keeps integers as int64, as client-go hands objects to kstatus.
	var objects []interface{}
	if err := utiljson.Unmarshal(data, &objects); err != nil {
		fmt.Fprintln(os.Stderr, "stdin: a JSON list of objects:", err)
		os.Exit(2)
	}
	out := make([]verdict, 0, len(objects))
	for i, o := range objects {
		obj, ok := o.(map[string]interface{})
		if !ok {
			fmt.Fprintf(os.Stderr, "stdin: item %d is not an object\n", i)
			os.Exit(2)
		}
		res, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus:", err)
			os.Exit(1)
		}
		out = append(out, verdict{Status: res.Status.String(), Message: res.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
