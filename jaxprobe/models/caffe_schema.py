"""The subset of BVLC Caffe's `caffe.proto` that jaxprobe reads (prototxt and caffemodel), built at run time.

No generated `_pb2` module and no protoc: the messages are declared below as data and turned into a
`google.protobuf.descriptor_pb2.FileDescriptorProto`, added to a private `DescriptorPool` (so it
never clashes with another `caffe.proto` a user may have loaded) and given message classes with
`message_factory.GetMessageClass`. Field numbers, types, labels and defaults are those of BVLC
caffe.proto (github.com/BVLC/caffe, src/caffe/proto/caffe.proto); fields jaxprobe does not need
are left out, which protobuf tolerates: the binary parser keeps them as unknown fields, and the
text parser is called with `allow_unknown_field=True`. One message is jaxprobe's own extension:
`UpsampleParameter` (`upsample_param`, LayerParameter field 149) for the `Upsample` layer type,
nearest or bilinear upsampling that BVLC Caffe lacks.

Public names: `NetParameter`, `LayerParameter`, `V1LayerParameter`, `BlobProto`, `BlobShape`,
`BlobProtoVector` (message classes) and `POOL`, the descriptor pool.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64, "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64,
    "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}
_LABELS = {"optional": _F.LABEL_OPTIONAL, "repeated": _F.LABEL_REPEATED}

_ENGINE = {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2}

# Top-level enums.
ENUMS = {
    "Phase": {"TRAIN": 0, "TEST": 1},
}

# message name -> (fields, nested enums). A field is (label, type, name, number[, default[, packed]]).
# A type that is not a scalar names a message or enum: "BlobShape", "Phase", or a nested enum
# "PoolingParameter.PoolMethod".
MESSAGES = {
    "BlobShape": ([
        ("repeated", "int64", "dim", 1, None, True),
    ], {}),
    "BlobProto": ([
        ("optional", "BlobShape", "shape", 7),
        ("repeated", "float", "data", 5, None, True),
        ("repeated", "float", "diff", 6, None, True),
        ("repeated", "double", "double_data", 8, None, True),
        ("repeated", "double", "double_diff", 9, None, True),
        # 4D dimensions -- deprecated in Caffe, still found in old .caffemodel files
        ("optional", "int32", "num", 1, "0"),
        ("optional", "int32", "channels", 2, "0"),
        ("optional", "int32", "height", 3, "0"),
        ("optional", "int32", "width", 4, "0"),
    ], {}),
    "BlobProtoVector": ([
        ("repeated", "BlobProto", "blobs", 1),
    ], {}),
    "FillerParameter": ([
        ("optional", "string", "type", 1, "constant"),
        ("optional", "float", "value", 2, "0"),
        ("optional", "float", "min", 3, "0"),
        ("optional", "float", "max", 4, "1"),
        ("optional", "float", "mean", 5, "0"),
        ("optional", "float", "std", 6, "1"),
        ("optional", "int32", "sparse", 7, "-1"),
        ("optional", "FillerParameter.VarianceNorm", "variance_norm", 8, "FAN_IN"),
    ], {"VarianceNorm": {"FAN_IN": 0, "FAN_OUT": 1, "AVERAGE": 2}}),
    "NetParameter": ([
        ("optional", "string", "name", 1),
        ("repeated", "string", "input", 3),
        ("repeated", "BlobShape", "input_shape", 8),
        ("repeated", "int32", "input_dim", 4),
        ("optional", "bool", "force_backward", 5, "false"),
        ("optional", "NetState", "state", 6),
        ("optional", "bool", "debug_info", 7, "false"),
        ("repeated", "LayerParameter", "layer", 100),
        ("repeated", "V1LayerParameter", "layers", 2),
    ], {}),
    "NetState": ([
        ("optional", "Phase", "phase", 1, "TEST"),
        ("optional", "int32", "level", 2, "0"),
        ("repeated", "string", "stage", 3),
    ], {}),
    "NetStateRule": ([
        ("optional", "Phase", "phase", 1),
        ("optional", "int32", "min_level", 2),
        ("optional", "int32", "max_level", 3),
        ("repeated", "string", "stage", 4),
        ("repeated", "string", "not_stage", 5),
    ], {}),
    "ParamSpec": ([
        ("optional", "string", "name", 1),
        ("optional", "ParamSpec.DimCheckMode", "share_mode", 2),
        ("optional", "float", "lr_mult", 3, "1"),
        ("optional", "float", "decay_mult", 4, "1"),
    ], {"DimCheckMode": {"STRICT": 0, "PERMISSIVE": 1}}),
    "LayerParameter": ([
        ("optional", "string", "name", 1),
        ("optional", "string", "type", 2),
        ("repeated", "string", "bottom", 3),
        ("repeated", "string", "top", 4),
        ("optional", "Phase", "phase", 10),
        ("repeated", "float", "loss_weight", 5),
        ("repeated", "ParamSpec", "param", 6),
        ("repeated", "BlobProto", "blobs", 7),
        ("repeated", "bool", "propagate_down", 11),
        ("repeated", "NetStateRule", "include", 8),
        ("repeated", "NetStateRule", "exclude", 9),
        ("optional", "TransformationParameter", "transform_param", 100),
        ("optional", "LossParameter", "loss_param", 101),
        ("optional", "AccuracyParameter", "accuracy_param", 102),
        ("optional", "BatchNormParameter", "batch_norm_param", 139),
        ("optional", "ConcatParameter", "concat_param", 104),
        ("optional", "ConvolutionParameter", "convolution_param", 106),
        ("optional", "DataParameter", "data_param", 107),
        ("optional", "DropoutParameter", "dropout_param", 108),
        ("optional", "FlattenParameter", "flatten_param", 135),
        ("optional", "InnerProductParameter", "inner_product_param", 117),
        ("optional", "InputParameter", "input_param", 143),
        ("optional", "LRNParameter", "lrn_param", 118),
        ("optional", "PoolingParameter", "pooling_param", 121),
        ("optional", "PowerParameter", "power_param", 122),
        ("optional", "ReLUParameter", "relu_param", 123),
        ("optional", "ReshapeParameter", "reshape_param", 133),
        ("optional", "ScaleParameter", "scale_param", 142),
        ("optional", "SigmoidParameter", "sigmoid_param", 124),
        ("optional", "SoftmaxParameter", "softmax_param", 125),
        ("optional", "TanHParameter", "tanh_param", 127),
        # jaxprobe extension: BVLC Caffe has no upsampling layer; 149 is the first field number
        # BVLC caffe.proto leaves free (its LayerParameter comment: "next available ... ID: 149").
        ("optional", "UpsampleParameter", "upsample_param", 149),
    ], {}),
    "TransformationParameter": ([
        ("optional", "float", "scale", 1, "1"),
        ("optional", "bool", "mirror", 2, "false"),
        ("optional", "uint32", "crop_size", 3, "0"),
        ("optional", "string", "mean_file", 4),
        ("repeated", "float", "mean_value", 5),
        ("optional", "bool", "force_color", 6, "false"),
        ("optional", "bool", "force_gray", 7, "false"),
    ], {}),
    "LossParameter": ([
        ("optional", "int32", "ignore_label", 1),
        ("optional", "LossParameter.NormalizationMode", "normalization", 3, "VALID"),
        ("optional", "bool", "normalize", 2),
    ], {"NormalizationMode": {"FULL": 0, "VALID": 1, "BATCH_SIZE": 2, "NONE": 3}}),
    "AccuracyParameter": ([
        ("optional", "uint32", "top_k", 1, "1"),
        ("optional", "int32", "axis", 2, "1"),
        ("optional", "int32", "ignore_label", 3),
    ], {}),
    "BatchNormParameter": ([
        ("optional", "bool", "use_global_stats", 1),
        ("optional", "float", "moving_average_fraction", 2, "0.999"),
        ("optional", "float", "eps", 3, "1e-05"),
    ], {}),
    "ConcatParameter": ([
        ("optional", "int32", "axis", 2, "1"),
        ("optional", "uint32", "concat_dim", 1, "1"),
    ], {}),
    "ConvolutionParameter": ([
        ("optional", "uint32", "num_output", 1),
        ("optional", "bool", "bias_term", 2, "true"),
        ("repeated", "uint32", "pad", 3),
        ("repeated", "uint32", "kernel_size", 4),
        ("repeated", "uint32", "stride", 6),
        ("repeated", "uint32", "dilation", 18),
        ("optional", "uint32", "pad_h", 9, "0"),
        ("optional", "uint32", "pad_w", 10, "0"),
        ("optional", "uint32", "kernel_h", 11),
        ("optional", "uint32", "kernel_w", 12),
        ("optional", "uint32", "stride_h", 13),
        ("optional", "uint32", "stride_w", 14),
        ("optional", "uint32", "group", 5, "1"),
        ("optional", "FillerParameter", "weight_filler", 7),
        ("optional", "FillerParameter", "bias_filler", 8),
        ("optional", "ConvolutionParameter.Engine", "engine", 15, "DEFAULT"),
        ("optional", "int32", "axis", 16, "1"),
        ("optional", "bool", "force_nd_im2col", 17, "false"),
    ], {"Engine": _ENGINE}),
    "DataParameter": ([
        ("optional", "string", "source", 1),
        ("optional", "uint32", "batch_size", 4),
        ("optional", "uint32", "rand_skip", 7, "0"),
        ("optional", "DataParameter.DB", "backend", 8, "LEVELDB"),
        ("optional", "float", "scale", 2, "1"),
        ("optional", "string", "mean_file", 3),
        ("optional", "uint32", "crop_size", 5, "0"),
        ("optional", "bool", "mirror", 6, "false"),
        ("optional", "bool", "force_encoded_color", 9, "false"),
        ("optional", "uint32", "prefetch", 10, "4"),
    ], {"DB": {"LEVELDB": 0, "LMDB": 1}}),
    "DropoutParameter": ([
        ("optional", "float", "dropout_ratio", 1, "0.5"),
    ], {}),
    "FlattenParameter": ([
        ("optional", "int32", "axis", 1, "1"),
        ("optional", "int32", "end_axis", 2, "-1"),
    ], {}),
    "InnerProductParameter": ([
        ("optional", "uint32", "num_output", 1),
        ("optional", "bool", "bias_term", 2, "true"),
        ("optional", "FillerParameter", "weight_filler", 3),
        ("optional", "FillerParameter", "bias_filler", 4),
        ("optional", "int32", "axis", 5, "1"),
        ("optional", "bool", "transpose", 6, "false"),
    ], {}),
    "InputParameter": ([
        ("repeated", "BlobShape", "shape", 1),
    ], {}),
    "LRNParameter": ([
        ("optional", "uint32", "local_size", 1, "5"),
        ("optional", "float", "alpha", 2, "1"),
        ("optional", "float", "beta", 3, "0.75"),
        ("optional", "LRNParameter.NormRegion", "norm_region", 4, "ACROSS_CHANNELS"),
        ("optional", "float", "k", 5, "1"),
        ("optional", "LRNParameter.Engine", "engine", 6, "DEFAULT"),
    ], {"NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1}, "Engine": _ENGINE}),
    "PoolingParameter": ([
        ("optional", "PoolingParameter.PoolMethod", "pool", 1, "MAX"),
        ("optional", "uint32", "pad", 4, "0"),
        ("optional", "uint32", "pad_h", 9, "0"),
        ("optional", "uint32", "pad_w", 10, "0"),
        ("optional", "uint32", "kernel_size", 2),
        ("optional", "uint32", "kernel_h", 5),
        ("optional", "uint32", "kernel_w", 6),
        ("optional", "uint32", "stride", 3, "1"),
        ("optional", "uint32", "stride_h", 7),
        ("optional", "uint32", "stride_w", 8),
        ("optional", "PoolingParameter.Engine", "engine", 11, "DEFAULT"),
        ("optional", "bool", "global_pooling", 12, "false"),
        ("optional", "PoolingParameter.RoundMode", "round_mode", 13, "CEIL"),
    ], {"PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}, "Engine": _ENGINE,
        "RoundMode": {"CEIL": 0, "FLOOR": 1}}),
    "PowerParameter": ([
        ("optional", "float", "power", 1, "1"),
        ("optional", "float", "scale", 2, "1"),
        ("optional", "float", "shift", 3, "0"),
    ], {}),
    "ReLUParameter": ([
        ("optional", "float", "negative_slope", 1, "0"),
        ("optional", "ReLUParameter.Engine", "engine", 2, "DEFAULT"),
    ], {"Engine": _ENGINE}),
    "ReshapeParameter": ([
        ("optional", "BlobShape", "shape", 1),
        ("optional", "int32", "axis", 2, "0"),
        ("optional", "int32", "num_axes", 3, "-1"),
    ], {}),
    "ScaleParameter": ([
        ("optional", "int32", "axis", 1, "1"),
        ("optional", "int32", "num_axes", 2, "1"),
        ("optional", "FillerParameter", "filler", 3),
        ("optional", "bool", "bias_term", 4, "false"),
        ("optional", "FillerParameter", "bias_filler", 5),
    ], {}),
    "SigmoidParameter": ([
        ("optional", "SigmoidParameter.Engine", "engine", 1, "DEFAULT"),
    ], {"Engine": _ENGINE}),
    "SoftmaxParameter": ([
        ("optional", "SoftmaxParameter.Engine", "engine", 1, "DEFAULT"),
        ("optional", "int32", "axis", 2, "1"),
    ], {"Engine": _ENGINE}),
    "TanHParameter": ([
        ("optional", "TanHParameter.Engine", "engine", 1, "DEFAULT"),
    ], {"Engine": _ENGINE}),
    # jaxprobe extension (not in BVLC caffe.proto): `type: "Upsample"`, parameter-free upsampling by
    # integer factors, with PyTorch's nn.Upsample semantics (jaxprobe.models.caffe_layers.Upsample).
    "UpsampleParameter": ([
        ("optional", "uint32", "scale", 1),
        ("optional", "uint32", "scale_h", 2),
        ("optional", "uint32", "scale_w", 3),
        ("optional", "UpsampleParameter.Mode", "mode", 4, "NEAREST"),
        ("optional", "bool", "align_corners", 5, "false"),
    ], {"Mode": {"NEAREST": 0, "BILINEAR": 1}}),
    "V1LayerParameter": ([
        ("repeated", "string", "bottom", 2),
        ("repeated", "string", "top", 3),
        ("optional", "string", "name", 4),
        ("repeated", "NetStateRule", "include", 32),
        ("repeated", "NetStateRule", "exclude", 33),
        ("optional", "V1LayerParameter.LayerType", "type", 5),
        ("repeated", "BlobProto", "blobs", 6),
        ("repeated", "string", "param", 1001),
        ("repeated", "V1LayerParameter.DimCheckMode", "blob_share_mode", 1002),
        ("repeated", "float", "blobs_lr", 7),
        ("repeated", "float", "weight_decay", 8),
        ("repeated", "float", "loss_weight", 35),
        ("optional", "AccuracyParameter", "accuracy_param", 27),
        ("optional", "ConcatParameter", "concat_param", 9),
        ("optional", "ConvolutionParameter", "convolution_param", 10),
        ("optional", "DataParameter", "data_param", 11),
        ("optional", "DropoutParameter", "dropout_param", 12),
        ("optional", "InnerProductParameter", "inner_product_param", 17),
        ("optional", "LRNParameter", "lrn_param", 18),
        ("optional", "PoolingParameter", "pooling_param", 19),
        ("optional", "PowerParameter", "power_param", 21),
        ("optional", "ReLUParameter", "relu_param", 30),
        ("optional", "SigmoidParameter", "sigmoid_param", 38),
        ("optional", "SoftmaxParameter", "softmax_param", 39),
        ("optional", "TanHParameter", "tanh_param", 37),
        ("optional", "TransformationParameter", "transform_param", 36),
        ("optional", "LossParameter", "loss_param", 42),
    ], {
        "LayerType": {
            "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
            "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
            "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9,
            "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13,
            "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29, "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34,
            "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27,
            "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23,
            "WINDOW_DATA": 24, "THRESHOLD": 31,
        },
        "DimCheckMode": {"STRICT": 0, "PERMISSIVE": 1},
    }),
}


def _enum_proto(name: str, values: dict) -> descriptor_pb2.EnumDescriptorProto:
    e = descriptor_pb2.EnumDescriptorProto(name=name)
    for k, v in values.items():
        e.value.add(name=k, number=v)
    return e


def _is_enum(type_name: str) -> bool:
    if type_name in ENUMS:
        return True
    msg, _, nested = type_name.partition(".")
    return bool(nested) and nested in MESSAGES.get(msg, ((), {}))[1]


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The `FileDescriptorProto` of the schema (package `caffe`, proto2)."""
    fdp = descriptor_pb2.FileDescriptorProto(name="jaxprobe/caffe.proto", package="caffe", syntax="proto2")
    for name, values in ENUMS.items():
        fdp.enum_type.append(_enum_proto(name, values))
    for name, (fields, enums) in MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for ename, values in enums.items():
            msg.enum_type.append(_enum_proto(ename, values))
        for spec in fields:
            label, ftype, fname, number = spec[:4]
            default = spec[4] if len(spec) > 4 else None
            packed = spec[5] if len(spec) > 5 else False
            f = msg.field.add(name=fname, number=number, label=_LABELS[label])
            if ftype in _TYPES:
                f.type = _TYPES[ftype]
            else:
                f.type = _F.TYPE_ENUM if _is_enum(ftype) else _F.TYPE_MESSAGE
                f.type_name = ".caffe." + ftype
            if default is not None:
                f.default_value = default
            if packed:
                f.options.packed = True
    return fdp


POOL = descriptor_pool.DescriptorPool()
POOL.Add(file_descriptor())


def message_class(name: str):
    """The message class `caffe.<name>` of the schema."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName("caffe." + name))


NetParameter = message_class("NetParameter")
LayerParameter = message_class("LayerParameter")
V1LayerParameter = message_class("V1LayerParameter")
BlobProto = message_class("BlobProto")
BlobShape = message_class("BlobShape")
BlobProtoVector = message_class("BlobProtoVector")
