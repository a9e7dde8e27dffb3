"""Models and the probe protocol: the floor every method stands on.

`probe.Model` is the handle every method takes: a network split into layers f_1..f_L (a layer is one
learned map with its batch norm, its nonlinearity and the parameter-free operations before the
next learned map), with `forward`, `up_to` (pre-activation at layer l) and `from_` (the rest).
Here too: the layer primitives (`layers`), pixel conventions (`pixels`), neuron addresses
(`neurons`), the architecture registry and default architectures (`zoo`, `archs_small`,
`archs_paper`), the Caffe prototxt reader, layers and generic builder with their protobuf schema
(`caffe_spec`, `caffe_layers`, `caffe_net`, `caffe_schema`)
and model directories (`store`). Nothing here knows a method.
"""
