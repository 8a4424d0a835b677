"""The api's routes, one ``APIRouter`` per concern; ``create_app`` includes them in this order
(the OpenAPI document lists paths in it)."""
