/* The compiled core's constructor for its plain frozen dataclasses (sdlcflow.core.records).
 *
 * `object.__new__(cls)` followed by `object.__setattr__(obj, "__dict__", fields)` costs about
 * 1,900 instructions from compiled code: two calls through the interpreter's wrappers, and in
 * CPython 3.11 an inline-values array and a materialised dict that are made only to be thrown
 * away. Allocating the instance and handing it the dict directly costs a fraction of that;
 * the decider builds an envelope, an event and about three state records per decision.
 * tools/compile_core.py builds this beside mypyc's extensions; without it records.build runs
 * the two calls above, with the same result.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
build(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "build() takes a class and a dict of its fields "
                     "(%zd arguments given)", nargs);
        return NULL;
    }
    PyObject *cls = args[0];
    PyObject *fields = args[1];
    if (!PyType_Check(cls) || !PyDict_CheckExact(fields)) {
        PyErr_Format(PyExc_TypeError, "build() takes a class and a dict of its fields, "
                     "not %s and %s", Py_TYPE(cls)->tp_name, Py_TYPE(fields)->tp_name);
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    if (type->tp_new != PyBaseObject_Type.tp_new || type->tp_dictoffset == 0) {
        PyErr_Format(PyExc_TypeError, "build() needs a class whose instances have a __dict__ "
                     "and object's __new__; %s has not", type->tp_name);
        return NULL;
    }
    PyObject *obj = type->tp_alloc(type, 0);
    if (obj == NULL) {
        return NULL;
    }
    if (PyObject_GenericSetDict(obj, fields, NULL) < 0) {
        Py_DECREF(obj);
        return NULL;
    }
    return obj;
}

static PyMethodDef methods[] = {
    {"build", (PyCFunction)(void (*)(void))build, METH_FASTCALL,
     "build(cls, fields): an instance of cls whose __dict__ is fields, without __init__."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "sdlcflow.core._records", NULL, 0, methods,
};

PyMODINIT_FUNC
PyInit__records(void)
{
    return PyModule_Create(&module);
}
