"""The fixed product catalog the emulated store sells, and so the SKUs its returns carry.

It is fixed (not seeded) so that the Klaviyo emulator's demo catalog, seeded from
:func:`catalog_skus`, always holds every SKU a generated return can mention, whatever the seed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

# (name, SKU code, size range, colours, base price in GBP): 15 garments in 4 styles = 60 products.
_GARMENTS: tuple[tuple[str, str, str, tuple[str, ...], float], ...] = (
    ("Tee", "TEE", "apparel", ("BLK", "WHT", "NVY"), 25.0),
    ("Hoodie", "HOD", "apparel", ("BLK", "GRY", "OLV"), 65.0),
    ("Sweatshirt", "SWT", "apparel", ("GRY", "NVY"), 55.0),
    ("Shirt", "SHT", "apparel", ("WHT", "BLU", "PNK"), 45.0),
    ("Chinos", "CHN", "waist", ("BEI", "NVY", "OLV"), 60.0),
    ("Jeans", "JNS", "waist", ("IND", "BLK"), 80.0),
    ("Dress", "DRS", "apparel", ("RED", "BLK", "GRN"), 90.0),
    ("Skirt", "SKR", "apparel", ("BLK", "CAM"), 50.0),
    ("Jacket", "JKT", "apparel", ("BLK", "KHK"), 140.0),
    ("Coat", "COT", "apparel", ("CAM", "NVY"), 220.0),
    ("Trainers", "TRN", "shoes", ("WHT", "BLK"), 95.0),
    ("Boots", "BOT", "shoes", ("BRN", "BLK"), 160.0),
    ("Cap", "CAP", "one", ("BLK", "NVY", "BEI"), 20.0),
    ("Scarf", "SCF", "one", ("GRY", "RED"), 35.0),
    ("Tote", "TOT", "one", ("NAT", "BLK"), 30.0),
)
_STYLES: tuple[tuple[str, str, float], ...] = (
    ("Classic", "CL", 1.0),
    ("Organic", "OR", 1.15),
    ("Relaxed", "RX", 0.95),
    ("Heritage", "HE", 1.35),
)
_SIZES: dict[str, tuple[str, ...]] = {
    "apparel": ("XS", "S", "M", "L", "XL"),
    "waist": ("28", "30", "32", "34", "36"),
    "shoes": ("38", "40", "42", "44"),
    "one": ("OS",),
}
_COLOUR_NAMES: dict[str, str] = {
    "BLK": "Black",
    "WHT": "White",
    "NVY": "Navy",
    "GRY": "Grey",
    "OLV": "Olive",
    "BLU": "Blue",
    "PNK": "Pink",
    "BEI": "Beige",
    "IND": "Indigo",
    "RED": "Red",
    "GRN": "Green",
    "CAM": "Camel",
    "KHK": "Khaki",
    "BRN": "Brown",
    "NAT": "Natural",
}


@dataclass(frozen=True)
class Variant:
    """One sellable variant, with the identifiers Shopify and Swap attach to a return line."""

    sku: str
    product_id: str
    variant_id: str
    barcode: str
    product_name: str
    variant_name: str
    size: str
    colour: str
    price_gbp: float


@dataclass(frozen=True)
class Product:
    """A product and its size/colour variants (Klaviyo's catalog items and variants)."""

    product_id: str
    name: str
    variants: tuple[Variant, ...]


@functools.cache
def catalog() -> tuple[Product, ...]:
    products = []
    for garment_no, (garment, code, size_kind, colours, base_price) in enumerate(_GARMENTS):
        for style_no, (style, style_code, factor) in enumerate(_STYLES):
            number = garment_no * len(_STYLES) + style_no
            product_id = str(7_100_000_000 + number * 1_000)
            name = f"{style} {garment}"
            price = round(base_price * factor) - 0.01
            variants: list[Variant] = []
            for colour in colours:
                for size in _SIZES[size_kind]:
                    serial = number * 100 + len(variants)
                    variants.append(
                        Variant(
                            sku=f"{code}-{style_code}-{size}-{colour}",
                            product_id=product_id,
                            variant_id=str(42_000_000_000 + serial),
                            barcode=f"50{serial:011d}",
                            product_name=name,
                            variant_name=f"{size} / {_COLOUR_NAMES[colour]}",
                            size=size,
                            colour=_COLOUR_NAMES[colour],
                            price_gbp=price,
                        )
                    )
            products.append(Product(product_id, name, tuple(variants)))
    return tuple(products)


def catalog_skus() -> list[str]:
    """Every SKU, in catalog order: the Klaviyo emulator seeds its demo catalog from it."""
    return [variant.sku for product in catalog() for variant in product.variants]
