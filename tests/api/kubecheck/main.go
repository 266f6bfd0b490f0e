// kubecheck runs a CRD and custom objects through the API server's own code (k8s.io/apiextensions-apiserver,
// the version the test control plane pins): CRD validation (structural schema, CEL compilation and cost
// estimates), then per object what a create does: pruning (unknown fields), defaulting, OpenAPI schema
// validation and the CEL rules.
//
// Usage: kubecheck CRD.yaml OBJECTS.json  (a JSON list of {"name": ..., "object": {...}}).
// Prints one JSON object: {"crdErrors": [...], "objects": [{"name", "errors", "defaulted"}]}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

type object struct {
	Name   string                 `json:"name"`
	Object map[string]interface{} `json:"object"`
}

type result struct {
	Name      string                 `json:"name"`
	Errors    []string               `json:"errors"`
	Defaulted map[string]interface{} `json:"defaulted"`
}

func main() {
	if len(os.Args) != 3 {
		fail(fmt.Errorf("usage: kubecheck CRD.yaml OBJECTS.json"))
	}
	data, err := os.ReadFile(os.Args[1])
	check(err)
	var v1crd apiextensionsv1.CustomResourceDefinition
	check(yaml.UnmarshalStrict(data, &v1crd))
	apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(&v1crd)
	var crd apiextensions.CustomResourceDefinition
	check(apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1crd, &crd, nil))
	out := map[string]interface{}{"crdErrors": []string{}, "objects": []result{}}
	crdErrors := []string{}
	for _, e := range validation.ValidateCustomResourceDefinition(context.TODO(), &crd) {
		crdErrors = append(crdErrors, e.Error())
	}
	out["crdErrors"] = crdErrors
	if len(crdErrors) > 0 {
		emit(out)
		return
	}
	// A single version's schema is moved to spec.validation by the conversion.
	schema := crd.Spec.Validation.OpenAPIV3Schema
	if crd.Spec.Versions[0].Schema != nil {
		schema = crd.Spec.Versions[0].Schema.OpenAPIV3Schema
	}
	structural, err := structuralschema.NewStructural(schema)
	check(err)
	validator, _, err := apiservervalidation.NewSchemaValidator(schema)
	check(err)
	celValidator := cel.NewValidator(structural, true, celconfig.PerCallLimit)

	raw, err := os.ReadFile(os.Args[2])
	check(err)
	var objects []object
	check(utiljson.Unmarshal(raw, &objects)) // whole numbers become int64, as in the API server
	results := []result{}
	for _, o := range objects {
		obj := o.Object
		errs := []string{}
		unknown := structuralpruning.PruneWithOptions(obj, structural, true,
			structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
		for _, path := range unknown {
			errs = append(errs, fmt.Sprintf("unknown field %q", path))
		}
		structuraldefaulting.Default(obj, structural)
		for _, e := range apiservervalidation.ValidateCustomResource(nil, obj, validator) {
			errs = append(errs, e.Error())
		}
		celErrs, _ := celValidator.Validate(context.TODO(), nil, structural, obj, nil, celconfig.RuntimeCELCostBudget)
		for _, e := range celErrs {
			errs = append(errs, e.Error())
		}
		results = append(results, result{Name: o.Name, Errors: errs, Defaulted: obj})
	}
	out["objects"] = results
	emit(out)
}

func emit(v interface{}) {
	data, err := json.Marshal(v)
	check(err)
	fmt.Println(string(data))
}

func check(err error) {
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kubecheck:", err)
	os.Exit(2)
}
