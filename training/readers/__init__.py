"""Dataset readers: YJMob100K / HuMob records, POI counts and raw GPS, from CSV, CSV.gz or Parquet, in validated chunks."""

from training.readers.dataset import Dataset, city_of, describe
from training.readers.formats import FORMATS
from training.readers.read import read_all, read_chunks, read_records
from training.readers.summary import BadRow, ReadSummary

__all__ = ["FORMATS", "BadRow", "Dataset", "ReadSummary", "city_of", "describe", "read_all", "read_chunks", "read_records"]
