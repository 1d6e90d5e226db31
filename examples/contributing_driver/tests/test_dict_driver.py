# tests/test_dict_driver.py
from storage import create_driver, driver_class
from storage.testing import DriverConformance


class TestDictDriver(DriverConformance):
    """The whole conformance kit, against the driver found by its URL."""

    driver_url = "dict://"


def test_the_entry_points_name_the_driver() -> None:
    found = driver_class("dict")
    assert f"{found.__module__}:{found.__qualname__}" == "unistorage_dict.driver:DictDriver"
    assert isinstance(create_driver("dict://"), found)
