"""Install cnn_rnn_tf: `pip install -e .` (add `[test]` for the test suite)."""

import setuptools

setuptools.setup(
    name="cnn_rnn_tf",
    version="0.1.0",
    description=(
        "CNN-RNN multi-label image classification (Wang et al., CVPR 2016) "
        "in TensorFlow / Keras 3, with TFDS data, tf.distribute training and "
        "TF Serving export."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # The top-level configs/ ship as cnn_rnn_tf/configs/, so that `--config=csv:runlocal`
    # (config_cli.config_file) works from an installed wheel, without a clone.
    packages=setuptools.find_packages(include=["cnn_rnn_tf", "cnn_rnn_tf.*"]) + ["cnn_rnn_tf.configs"],
    package_dir={"cnn_rnn_tf.configs": "configs"},
    python_requires=">=3.11,<3.13",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-datasets>=4.9.9,<5",
        "tensorflow-serving-api>=2.21,<2.22",
        "numpy>=1.26,<3",
        "absl-py>=2.1,<3",
        "ml-collections>=1.0,<2",
        # tensorflow-datasets needs it for every builder's code_path (not declared by tfds).
        "importlib_resources>=6,<7",
        # TensorBoard summaries (tf.summary needs it; TF 2.21 no longer pulls it in).
        "tensorboard>=2.19,<3",
        # The demo report's figures.
        "matplotlib>=3.8,<4",
        # PLA / MLA label orders: the least-cost assignment (linear_sum_assignment).
        "scipy>=1.11,<2",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            # `make test` runs the tests in 2 processes (1.6x faster on 2 cores).
            "pytest-xdist>=3.5,<4",
            # Metrics are checked against scikit-learn where definitions agree.
            "scikit-learn>=1.4,<2",
        ],
    },
)
