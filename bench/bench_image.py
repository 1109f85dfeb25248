"""Lesson 01's image operations against OpenCV, scikit-image and torchvision, on a real photo."""

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from run import Case
from skimage import color

from course_utils import data, image


def benchmarks() -> list[Case]:
    cv2.setNumThreads(torch.get_num_threads())  # OpenCV has its own pool: give it as many threads
    rgb = data.photo("astronaut")  # uint8 [512, 512, 3]
    x = image.to_tensor(rgb)  # float [3, 512, 512]
    gray = image.rgb_to_gray(x)  # [1, 512, 512]
    gray_np = gray[0].numpy()
    gray_u8 = (gray_np * 255).round().astype(np.uint8)
    rgb_f = rgb.astype(np.float32) / 255
    gauss = image.KERNELS["gaussian"]

    def cv_sobel():
        gx = cv2.Sobel(gray_np, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray_np, cv2.CV_32F, 0, 1, ksize=3)
        return cv2.magnitude(gx, gy)

    return [
        Case(
            "rgb_to_gray 512x512",
            lambda: image.rgb_to_gray(x),
            lambda: TF.rgb_to_grayscale(x),
            "torchvision rgb_to_grayscale",
        ),
        Case(
            "rgb_to_hsv 512x512",
            lambda: image.rgb_to_hsv(x),
            lambda: color.rgb2hsv(rgb_f),
            "skimage rgb2hsv",
        ),
        Case(
            "convolve 3x3 gaussian, grey 512x512",
            lambda: image.convolve(gray, gauss),
            lambda: cv2.filter2D(gray_np, -1, gauss.numpy(), borderType=cv2.BORDER_CONSTANT),
            "cv2.filter2D",
        ),
        Case(
            "sobel magnitude 512x512",
            lambda: image.sobel(gray),
            cv_sobel,
            "cv2.Sobel x2 + magnitude",
        ),
        Case(
            "equalize_histogram 512x512",
            lambda: image.equalize_histogram(gray),
            lambda: cv2.equalizeHist(gray_u8),
            "cv2.equalizeHist",
        ),
    ]
